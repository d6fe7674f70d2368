"""Node membership: a node is in the cluster while its lease-bound key exists.

`<ns>/nodes/<name>` is created with a transaction (only if absent), so two live
nodes can never share a name. The key is bound to the node's own lease: a node
that dies or is cut off longer than the TTL drops out by itself, and anything
else bound to that lease (execution locks, later) goes with it. We own the
keep-alive loop: it re-registers under the same name if the lease expired
while etcd was unreachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from .. import __version__
from ..errors import ClusterConnectionError, ClusterError, DuplicateNode
from . import keys
from .etcd import Etcd, KeyValue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeInfo:
    """What a node publishes about itself."""

    name: str
    host: str
    pid: int
    version: str
    started_at: float
    labels: tuple[str, ...] = ()

    @classmethod
    def here(cls, name: str, labels: tuple[str, ...] = ()) -> NodeInfo:
        """This process, as a node named `name`."""
        return cls(name, socket.gethostname(), os.getpid(), __version__, time.time(), labels)

    def encode(self) -> bytes:
        """The JSON value of the node key."""
        fields = asdict(self)
        del fields["name"]
        return json.dumps(fields, sort_keys=True).encode()

    @classmethod
    def decode(cls, name: str, value: bytes) -> NodeInfo:
        """Parse a node key's value; unknown values read as empty fields."""
        try:
            data = json.loads(value)
            return cls(
                name=name,
                host=str(data.get("host", "")),
                pid=int(data.get("pid", 0)),
                version=str(data.get("version", "")),
                started_at=float(data.get("started_at", 0.0)),
                labels=tuple(str(label) for label in data.get("labels", ())),
            )
        except (ValueError, TypeError, AttributeError):
            return cls(name, "", 0, "", 0.0)


async def list_nodes(etcd: Etcd, namespace: str) -> list[NodeInfo]:
    """The live nodes, sorted by name."""
    prefix = keys.nodes_prefix(namespace)
    kvs, _ = await etcd.get_prefix(prefix)
    nodes = [NodeInfo.decode(keys.name_of(prefix, kv.key), kv.value) for kv in kvs]
    return sorted(nodes, key=lambda n: n.name)


def _is_dead_local_process(holder: NodeInfo, me: NodeInfo) -> bool:
    """Whether the holder of our name is a process on this host that no longer runs.

    Lets a node restarted right after a crash take its name back at once
    instead of waiting out the crashed process's lease.
    """
    if holder.host != me.host or holder.pid in (0, me.pid):
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Membership:
    """Registers one node and keeps its lease alive."""

    def __init__(self, etcd: Etcd, namespace: str, info: NodeInfo, ttl: int) -> None:
        self._etcd = etcd
        self._key = keys.node(namespace, info.name)
        self._info = info
        self._ttl = ttl
        self.lease_id = 0
        self.registered = asyncio.Event()
        self.etcd_reachable = True  # as of the last lease refresh
        # Called after every registration, so whatever a node binds to its lease
        # (drain markers) is written again under a new lease.
        self.on_registered: list[Callable[[], None]] = []

    async def register(self) -> None:
        """Take the node name under a new lease; DuplicateNode if a live node has it."""
        for attempt in range(2):
            lease = await self._etcd.grant(self._ttl)
            holder = await self._etcd.create(self._key, self._info.encode(), lease)
            if holder is None:
                self.lease_id = lease
                self.registered.set()
                log.info("node %s registered with lease %x (ttl %ss)", self._info.name, lease, self._ttl)
                for callback in self.on_registered:
                    callback()
                return
            await self._etcd.revoke(lease)
            if attempt or not await self._take_over(holder):
                raise self._duplicate(holder)
        raise AssertionError("unreachable")

    def _duplicate(self, holder: KeyValue) -> DuplicateNode:
        return DuplicateNode(
            f"node name {self._info.name!r} is already taken by a live node"
            f" ({self._describe_holder(holder)}); pick another --name"
        )

    async def _take_over(self, holder: KeyValue) -> bool:
        info = NodeInfo.decode(self._info.name, holder.value)
        if not _is_dead_local_process(info, self._info):
            return False
        log.warning("node name %s was held by dead process %d; taking it over", info.name, info.pid)
        await self._etcd.revoke(holder.lease)
        return True

    def _describe_holder(self, holder: KeyValue) -> str:
        info = NodeInfo.decode(self._info.name, holder.value)
        return f"host {info.host}, pid {info.pid}"

    async def keep_alive(self) -> None:
        """Refresh the lease every third of its TTL, forever; re-register if it expired."""
        interval = self._ttl / 3
        warned = False
        while True:
            await asyncio.sleep(interval)
            try:
                if self.lease_id and await self._etcd.refresh(self.lease_id) > 0:
                    warned = False
                    self.etcd_reachable = True
                    continue
                self.registered.clear()
                log.warning("lease of node %s expired; registering again", self._info.name)
                await self.register()
                self.etcd_reachable = True
            except ClusterConnectionError as e:
                self.etcd_reachable = False
                if not warned:
                    log.warning("cannot refresh node lease: %s (retrying)", e)
                    warned = True
            except ClusterError as e:
                log.error("cannot re-register node %s: %s (retrying)", self._info.name, e)

    async def leave(self) -> None:
        """Revoke the lease: the node key (and all it holds) goes at once."""
        lease, self.lease_id = self.lease_id, 0
        self.registered.clear()
        if lease:
            await self._etcd.revoke(lease)
            log.info("node %s left the cluster", self._info.name)
