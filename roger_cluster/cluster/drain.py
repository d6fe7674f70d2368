"""Draining a partition: stop taking its jobs, let running ones finish, then remove it.

`partition stop --drain` is a conversation through etcd, with no node named
in advance and none able to block it by dying:

1. The client sets `"draining": true` in the partition's value. Every node
   sees it through its map watch and stops consuming the partition's queues
   (placement treats a draining partition as not wanted); running jobs finish.
2. Each node, once it runs no job of the partition, writes
   `<ns>/drained/<partition>/<node>` under its own membership lease. A node
   that never consumed the partition (placement, paused queues) writes it at
   once; a node that starts during the drain never consumes it and writes it
   at its first convergence.
3. The client waits until every live node (`<ns>/nodes/`) has written its
   marker, then deletes the partition (only if it is still the draining value
   it wrote) and the markers.

A node that dies during the drain loses its lease: it leaves the node list and
cannot hold the drain up; RabbitMQ requeues the messages of its unfinished
jobs, which stay in the queue with the partition's other jobs. A node whose
lease expired while it was cut off registers again and writes its marker again
under the new lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..errors import ClusterConnectionError, UnknownPartition
from ..errors import DrainAbandoned as DrainAbandoned  # re-exported: defined with the tree in errors.py
from ..errors import DrainTimeout as DrainTimeout
from . import keys
from .etcd import Etcd, KeyValue, op_delete, op_put, unchanged
from .membership import list_nodes
from .partitions import PartitionSpec

log = logging.getLogger(__name__)

DEFAULT_DRAIN_TIMEOUT = 300.0
POLL_INTERVAL = 0.25


@dataclass(frozen=True)
class DrainProgress:
    """Where a drain stands: live nodes that are done, and those still running jobs."""

    partition: str
    """The partition draining."""
    drained: tuple[str, ...]
    """Nodes done with its running jobs."""
    pending: tuple[str, ...]
    """Nodes still running some."""


OnProgress = Callable[[DrainProgress], None]


class DrainReports:
    """This node's side: write its marker for every draining partition it is done with."""

    def __init__(self, etcd: Etcd, namespace: str, node: str) -> None:
        self._etcd = etcd
        self._namespace = namespace
        self._node = node
        self._reported: dict[str, int] = {}  # partition -> lease the marker was written under

    async def report(self, draining: frozenset[str], busy: frozenset[str], lease: int) -> None:
        """Write the marker of each partition in `draining` but not in `busy` (still running
        jobs here), once per lease; forget partitions no longer draining."""
        for partition in [p for p in self._reported if p not in draining]:
            del self._reported[partition]
        if not lease:
            return  # not registered right now: the marker is written once we are again
        for partition in sorted(draining - busy):
            if self._reported.get(partition) == lease:
                continue
            await self._etcd.put(keys.drained(self._namespace, partition, self._node), b"", lease)
            self._reported[partition] = lease
            log.info("partition %s drained on node %s", partition, self._node)


async def _read(etcd: Etcd, namespace: str, name: str) -> tuple[PartitionSpec, KeyValue]:
    kv = await etcd.get(keys.partition(namespace, name))
    if kv is None:
        raise UnknownPartition(f"partition {name!r} does not exist")
    return PartitionSpec.decode(name, kv.value), kv


async def start_drain(etcd: Etcd, namespace: str, name: str) -> PartitionSpec:
    """Mark the partition draining (a no-op if it already is); UnknownPartition if absent."""
    key = keys.partition(namespace, name)
    while True:
        spec, kv = await _read(etcd, namespace, name)
        if spec.draining:
            return spec
        # Markers of an earlier drain of the same name are stale: no node writes
        # one before it has seen this drain, so clearing them first is safe.
        await clear_markers(etcd, namespace, name)
        draining = replace(spec, draining=True)
        written, _ = await etcd.txn([unchanged(key, kv)], [op_put(key, draining.encode())])
        if written:
            log.info("partition %s draining", name)
            return draining


async def progress(etcd: Etcd, namespace: str, name: str) -> DrainProgress:
    """Which live nodes have written their marker and which not yet."""
    live = {node.name for node in await list_nodes(etcd, namespace)}
    prefix = keys.drained_prefix(namespace, name)
    kvs, _ = await etcd.get_prefix(prefix)
    done = {keys.name_of(prefix, kv.key) for kv in kvs}
    return DrainProgress(name, tuple(sorted(live & done)), tuple(sorted(live - done)))


async def finish_drain(
    etcd: Etcd,
    namespace: str,
    name: str,
    timeout: float = DEFAULT_DRAIN_TIMEOUT,
    on_progress: OnProgress | None = None,
) -> bool:
    """Wait until every live node has drained `name`, then remove it; False if it was
    removed meanwhile by someone else.

    Raises DrainTimeout after `timeout` seconds (the partition stays draining)
    and DrainAbandoned if it was started again meanwhile.
    """
    key = keys.partition(namespace, name)
    deadline = time.monotonic() + timeout
    last: DrainProgress | None = None
    while True:
        try:
            kv = await etcd.get(key)
            if kv is None:
                return False
            if not PartitionSpec.decode(name, kv.value).draining:
                raise DrainAbandoned(f"partition {name!r} was started again while draining; it stays")
            now = await progress(etcd, namespace, name)
            if now != last and on_progress is not None:
                on_progress(now)
            last = now
            if not now.pending and await _remove(etcd, namespace, key, kv, name):
                return True
        except ClusterConnectionError as e:  # keep waiting through an etcd hiccup
            log.warning("drain of %s: %s (retrying)", name, e)
        if time.monotonic() >= deadline:
            pending = ", ".join(last.pending) if last else "unknown"
            raise DrainTimeout(
                f"partition {name!r} still draining after {timeout:g}s (nodes still running its jobs:"
                f" {pending}); it stays draining: run the command again to keep waiting"
            )
        await asyncio.sleep(POLL_INTERVAL)


async def clear_markers(etcd: Etcd, namespace: str, name: str) -> None:
    """Delete the nodes' drained markers of a partition."""
    await etcd.delete_prefix(keys.drained_prefix(namespace, name))


async def _remove(etcd: Etcd, namespace: str, key: str, kv: KeyValue, name: str) -> bool:
    """Delete the partition if it is still the draining value read as `kv`, then the markers."""
    removed, _ = await etcd.txn([unchanged(key, kv)], [op_delete(key)])
    if removed:
        await clear_markers(etcd, namespace, name)
        log.info("partition %s drained and removed", name)
    return removed
