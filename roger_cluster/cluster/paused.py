"""Paused queues: `<ns>/paused/<partition>/<queue>`, followed by every node.

A paused queue keeps its messages in RabbitMQ; no node consumes it. The
state lives in etcd, not in any node, so it survives node and cluster
restarts, and a node that starts while a queue is paused reads it before it
attaches its first consumer. Like the partition map, every node follows the
prefix through `watch.follow_prefix`, so it never misses a pause or a resume.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from . import keys
from .etcd import Etcd, WatchEvent
from .watch import follow_prefix

log = logging.getLogger(__name__)

QueueId = tuple[str, str]  # (partition, queue)


async def pause(etcd: Etcd, namespace: str, partition: str, queue: str) -> None:
    """Pause a queue cluster-wide (idempotent)."""
    value = json.dumps({"paused_at": time.time()}).encode()
    await etcd.put(keys.paused(namespace, partition, queue), value)


async def resume(etcd: Etcd, namespace: str, partition: str, queue: str) -> bool:
    """Resume a queue; False if it was not paused."""
    return await etcd.delete(keys.paused(namespace, partition, queue)) > 0


def queue_of(prefix: str, key: str) -> QueueId | None:
    """The (partition, queue) a paused key names, or None: a key that names none is no pause."""
    partition, sep, queue = keys.name_of(prefix, key).partition("/")
    return (partition, queue) if sep and partition and queue else None


async def read_paused(etcd: Etcd, namespace: str) -> frozenset[QueueId]:
    """Every paused (partition, queue)."""
    prefix = keys.paused_prefix(namespace)
    kvs, _ = await etcd.get_prefix(prefix)
    return frozenset(q for kv in kvs if (q := queue_of(prefix, kv.key)) is not None)


async def follow_paused(
    etcd: Etcd,
    namespace: str,
    on_change: Callable[[frozenset[QueueId]], Awaitable[None]],
) -> None:
    """Call `on_change` with every paused queue at start and after every change. Runs forever."""
    prefix = keys.paused_prefix(namespace)
    current: set[QueueId] = set()

    async def reset(state: dict[str, bytes]) -> None:
        current.clear()
        current.update(q for key in state if (q := queue_of(prefix, key)) is not None)
        await on_change(frozenset(current))

    async def apply(events: list[WatchEvent]) -> None:
        for event in events:
            queue_id = queue_of(prefix, event.key)
            if queue_id is None:
                continue
            if event.value is None:
                current.discard(queue_id)
                log.info("queue %s of partition %s resumed", queue_id[1], queue_id[0])
            else:
                current.add(queue_id)
                log.info("queue %s of partition %s paused", queue_id[1], queue_id[0])
        await on_change(frozenset(current))

    await follow_prefix(etcd, prefix, reset, apply)
