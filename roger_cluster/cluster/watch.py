"""Follow a prefix of etcd: read it whole, then watch it, and never miss a change.

The read gives a revision; the watch starts right after it. When the watch
breaks (etcd restarted, network) or its revision was compacted, the prefix is
read whole again and the caller is told to reset, so a mirror built from these
calls is always the state of some recent revision. Used for the partition map
and for cancellations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..errors import ClusterError
from .etcd import Etcd, WatchEvent

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)

OnReset = Callable[[dict[str, bytes]], Awaitable[None]]
OnEvents = Callable[[list[WatchEvent]], Awaitable[None]]


async def follow_prefix(etcd: Etcd, prefix: str, on_reset: OnReset, on_events: OnEvents) -> None:
    """Call `on_reset` with every key under `prefix`, then `on_events` per change. Runs forever."""
    attempt = 0
    while True:
        try:
            kvs, revision = await etcd.get_prefix(prefix)
            await on_reset({kv.key: kv.value for kv in kvs})
            attempt = 0
            async for events in etcd.watch_prefix(prefix, revision + 1):
                await on_events(events)
        except ClusterError as e:
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            attempt += 1
            log.warning("watch of %s interrupted (%s); reading it again in %.1fs", prefix, e, delay)
            await asyncio.sleep(delay)
