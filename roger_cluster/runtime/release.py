"""Freeing keys after a job was settled: tried now, then again in the background.

A job that finished is acked whatever etcd says (a finished job must not run
again because etcd was unreachable). What it held in etcd (its queue key, its
place in an execution key's count, the key's lock) is freed after the settle:
the first attempt right away, then, while etcd does not answer, again with a
backoff until it does or the node stops. A node that stops with releases
still pending logs them; an execution-key lock goes with the node's lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..errors import RogerError

log = logging.getLogger(__name__)

BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


class Releaser:
    """Runs releases (idempotent etcd operations) until each succeeded."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._pending)

    async def now(self, what: str, release: Callable[[], Awaitable[object]]) -> bool:
        """Try `release` once now; if etcd fails, keep trying in the background.
        Returns whether it is done."""
        try:
            await release()
            return True
        except RogerError as e:
            log.warning("could not %s (%s); trying again in the background", what, e)
        self.later(what, release, first=BACKOFF[0])
        return False

    def later(self, what: str, release: Callable[[], Awaitable[object]], first: float = 0.0) -> None:
        """Run `release` in the background until it succeeds."""
        task = asyncio.ensure_future(self._until_done(what, release, first))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _until_done(self, what: str, release: Callable[[], Awaitable[object]], first: float) -> None:
        await asyncio.sleep(first)
        attempt = 0
        while True:
            try:
                await release()
                if attempt:
                    log.info("could %s after %d more attempt(s)", what, attempt)
                return
            except RogerError as e:
                (log.warning if attempt == 0 else log.debug)("cannot %s yet (%s); trying again", what, e)
            except Exception:  # a fault we did not map: keep it visible, keep trying
                log.exception("unexpected error trying to %s", what)
            await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
            attempt += 1

    async def close(self, timeout: float) -> None:
        """Give pending releases up to `timeout` seconds, then stop them (logged)."""
        if not self._pending:
            return
        _, left = await asyncio.wait(set(self._pending), timeout=timeout)
        for task in left:
            task.cancel()
        if left:
            log.warning("%d key release(s) not done at shutdown; such keys stay held", len(left))
        await asyncio.gather(*left, return_exceptions=True)
