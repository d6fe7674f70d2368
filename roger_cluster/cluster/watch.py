"""Follow a prefix of etcd: read it whole, then watch it, and never miss a change.

The read gives a revision; the watch starts right after it. When the watch
breaks (etcd restarted, network), it resumes from the revision after the last
one it saw, so an outage costs the changes made meanwhile, not a read of the
whole prefix by every node at once (the partition map of a big cluster is
megabytes, and every node comes back in the same second). Only when etcd no
longer has that revision (compacted, or its data restored or replaced) is the
prefix read whole again and the caller told to reset, so a mirror built from
these calls is always the state of some recent revision. Used for the
partition map, paused queues, cancellations, schedules and execution locks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..errors import ClusterConnectionError, ClusterError
from .etcd import Etcd, WatchEvent

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)

OnReset = Callable[[dict[str, bytes]], Awaitable[None]]
OnEvents = Callable[[list[WatchEvent]], Awaitable[None]]


async def follow_prefix(etcd: Etcd, prefix: str, on_reset: OnReset, on_events: OnEvents) -> None:
    """Call `on_reset` with every key under `prefix`, then `on_events` per change. Runs forever.

    `on_reset` is called again only when the watch cannot resume where it was; a batch
    whose `on_events` raised is delivered again."""
    attempt = 0
    revision: int | None = None  # everything up to it is applied; None: read it whole
    while True:
        try:
            if revision is None:
                kvs, read_at = await etcd.get_prefix(prefix)
                log.info("read %s whole: %d keys at revision %d", prefix, len(kvs), read_at)
                await on_reset({kv.key: kv.value for kv in kvs})
                revision = read_at
            async for batch in etcd.watch_prefix(prefix, revision + 1):
                attempt = 0
                if batch.events:
                    await on_events(batch.events)
                revision = batch.revision
        except ClusterError as e:
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            attempt += 1
            if revision is not None and isinstance(e, ClusterConnectionError):
                log.warning(
                    "watch of %s interrupted (%s); resuming from revision %d in %.1fs",
                    prefix,
                    e,
                    revision + 1,
                    delay,
                )
            else:  # compacted, restored, refused: what we hold may be stale
                revision = None
                log.warning("watch of %s interrupted (%s); reading it again in %.1fs", prefix, e, delay)
            await asyncio.sleep(delay)
