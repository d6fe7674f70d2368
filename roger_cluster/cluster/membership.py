"""Node membership: a node is in the cluster while its lease-bound key exists.

`<ns>/nodes/<name>` is created with a transaction (only if absent), so two live
nodes can never share a name. The key is bound to the node's own lease: a node
that dies or is cut off longer than the TTL drops out by itself, and anything
else bound to that lease (execution locks, drain markers) goes with it. We own
the keep-alive loop: it re-registers under the same name if the lease expired
while etcd was unreachable, and stops the node (DuplicateNode) if another
instance has taken the name meanwhile.

A name still held by a run of this node that no longer runs (a crash, a
container restart) is taken over at once, or within seconds when that run was
in another pid namespace, instead of after the TTL; see
`identity.py` for how a dead holder is told from a live one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, replace

from ..errors import ClusterConnectionError, ClusterError, DuplicateNode
from ..version import __version__
from . import identity, keys
from .etcd import Etcd, KeyValue, WatchEvent
from .identity import Decision, LeaseWatch, LocalProcesses, Run, Verdict
from .watch import follow_prefix

log = logging.getLogger(__name__)

# A node refreshes its lease at least this often, whatever its TTL: another run
# of it that finds the name held can then tell a dead holder from a live one
# within this (plus identity.LEASE_SLACK) instead of a third of a long TTL.
MAX_REFRESH_INTERVAL = 2.0
LEASE_POLL_INTERVAL = 0.25


def refresh_interval(ttl: int) -> float:
    """Seconds between two refreshes of a lease of `ttl` seconds."""
    return min(ttl / 3, MAX_REFRESH_INTERVAL)


@dataclass(frozen=True)
class NodeInfo:
    """What a node publishes about itself.

    `instance` (random per Node object), `boot_id`, `pid_ns` and `starttime`
    tell one run of a node from another with the same host name and pid (a
    restarted container is PID 1 again); `refresh` is how often it refreshes
    its lease. Values written before these existed read as "" / 0: unknown.
    """

    name: str
    """The node's name."""
    host: str
    """The host it runs on."""
    pid: int
    """Its process id."""
    version: str
    """Its roger_cluster version."""
    started_at: float
    """When it started (Unix time)."""
    labels: tuple[str, ...] = ()
    """Its labels (`roger-node --label`)."""
    instance: str = ""
    """Random per Node object; "": unknown."""
    boot_id: str = ""
    """The host's boot id; "": unknown."""
    pid_ns: str = ""
    """Its PID namespace; "": unknown."""
    starttime: int = 0
    """The process start time in clock ticks since boot; 0: unknown."""
    refresh: float = 0.0  # seconds between lease refreshes; 0: unknown (a third of the TTL)
    """Seconds between lease refreshes; 0: unknown (a third of the TTL)."""

    @classmethod
    def here(cls, name: str, labels: tuple[str, ...] = ()) -> NodeInfo:
        """This process, as a new node instance named `name`."""
        return cls(
            name,
            socket.gethostname(),
            os.getpid(),
            __version__,
            time.time(),
            labels,
            instance=uuid.uuid4().hex,
            boot_id=identity.boot_id(),
            pid_ns=identity.pid_namespace(),
            starttime=identity.own_starttime(),
        )

    @property
    def run(self) -> Run:
        """What identifies this run of the node process."""
        return Run(self.host, self.pid, self.instance, self.boot_id, self.pid_ns, self.starttime)

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
                instance=str(data.get("instance", "")),
                boot_id=str(data.get("boot_id", "")),
                pid_ns=str(data.get("pid_ns", "")),
                starttime=int(data.get("starttime", 0)),
                refresh=float(data.get("refresh", 0.0)),
            )
        except (ValueError, TypeError, AttributeError):
            return cls(name, "", 0, "", 0.0)


async def list_nodes(etcd: Etcd, namespace: str) -> list[NodeInfo]:
    """The live nodes, sorted by name."""
    prefix = keys.nodes_prefix(namespace)
    kvs, _ = await etcd.get_prefix(prefix)
    nodes = [NodeInfo.decode(keys.name_of(prefix, kv.key), kv.value) for kv in kvs]
    return sorted(nodes, key=lambda n: n.name)


Members = dict[str, frozenset[str]]  # live node name -> its labels


async def follow_members(
    etcd: Etcd, namespace: str, on_change: Callable[[Mapping[str, frozenset[str]]], Awaitable[None]]
) -> None:
    """Call `on_change` with the live members (name -> labels) at start and after every
    join, death or departure. Runs forever. Placement with `replicas` is computed from
    it: a node key goes when its lease expires, so a dead node drops out within the TTL."""
    prefix = keys.nodes_prefix(namespace)
    current: Members = {}

    def labels_of(value: bytes) -> frozenset[str]:
        return frozenset(NodeInfo.decode("", value).labels)

    async def reset(state: dict[str, bytes]) -> None:
        current.clear()
        current.update({keys.name_of(prefix, key): labels_of(value) for key, value in state.items()})
        await on_change(dict(current))

    async def apply(events: list[WatchEvent]) -> None:
        for event in events:
            name = keys.name_of(prefix, event.key)
            if event.value is None:
                current.pop(name, None)
            else:
                current[name] = labels_of(event.value)
        await on_change(dict(current))

    await follow_prefix(etcd, prefix, reset, apply)


class Membership:
    """Registers one node and keeps its lease alive."""

    def __init__(self, etcd: Etcd, namespace: str, info: NodeInfo, ttl: int) -> None:
        self._etcd = etcd
        self._key = keys.node(namespace, info.name)
        self._interval = refresh_interval(ttl)
        self.info = replace(info, refresh=self._interval)  # as published in the node key
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
            holder = await self._etcd.create(self._key, self.info.encode(), lease)
            if holder is None:
                self.lease_id = lease
                self.registered.set()
                log.info("node %s registered with lease %x (ttl %ss)", self.info.name, lease, self._ttl)
                for callback in self.on_registered:
                    callback()
                return
            await self._etcd.revoke(lease)
            verdict = await self._judge(holder) if not attempt else None
            if verdict is None or verdict.decision is not Decision.TAKE_OVER:
                raise self._duplicate(holder, verdict)
            if holder.lease:
                await self._etcd.revoke(holder.lease)
        raise AssertionError("unreachable")

    def _duplicate(self, holder: KeyValue, verdict: Verdict | None) -> DuplicateNode:
        info = NodeInfo.decode(self.info.name, holder.value)
        why = f": {verdict.reason}" if verdict else ""
        return DuplicateNode(
            f"node name {self.info.name!r} is already taken by a live node"
            f" (host {info.host}, pid {info.pid}){why}; pick another --name"
        )

    async def _judge(self, holder: KeyValue) -> Verdict:
        """Whether the holder of our name still runs; logged at WARNING, as a
        take-over revokes another lease and a refusal stops this node."""
        info = NodeInfo.decode(self.info.name, holder.value)
        if holder.lease == 0:  # deleted between our create and our read
            verdict = Verdict(Decision.TAKE_OVER, "its key is gone")
        else:
            verdict = identity.judge(info.run, self.info.run, LocalProcesses())
            if verdict.decision is Decision.WATCH_LEASE:
                verdict = await self._watch_lease(holder.lease, info)
        log.warning(
            "node name %s is held by host %s pid %d (lease %x): %s; %s",
            info.name,
            info.host,
            info.pid,
            holder.lease,
            verdict.reason,
            "taking it over" if verdict.decision is Decision.TAKE_OVER else "not taking it",
        )
        return verdict

    async def _watch_lease(self, lease: int, holder: NodeInfo) -> Verdict:
        """Poll the holder's lease until it shows whether the holder refreshes it."""
        loop = asyncio.get_running_loop()
        ttl = await self._etcd.lease_ttl(lease)
        # No live holder refreshes less often than a third of its TTL.
        every = min(holder.refresh, ttl.granted / 3) if holder.refresh > 0 else ttl.granted / 3
        watch = LeaseWatch(ttl.granted, every)
        while (verdict := watch.observe(ttl.remaining, loop.time())) is None:
            await asyncio.sleep(LEASE_POLL_INTERVAL)
            ttl = await self._etcd.lease_ttl(lease)
        return verdict

    async def keep_alive(self) -> None:
        """Refresh the lease every `refresh_interval(ttl)`, forever; re-register if it
        expired. Raises DuplicateNode if another instance took the name meanwhile."""
        warned = False
        while True:
            await asyncio.sleep(self._interval)
            try:
                if self.lease_id and await self._etcd.refresh(self.lease_id) > 0:
                    warned = False
                    self.etcd_reachable = True
                    continue
                self.registered.clear()
                log.warning("lease of node %s expired; registering again", self.info.name)
                await self.register()
                self.etcd_reachable = True
            except DuplicateNode:
                raise  # another instance has the name now: this one must stop
            except ClusterConnectionError as e:
                self.etcd_reachable = False
                if not warned:
                    log.warning("cannot refresh node lease: %s (retrying)", e)
                    warned = True
            except ClusterError as e:
                log.error("cannot re-register node %s: %s (retrying)", self.info.name, e)

    async def leave(self) -> None:
        """Revoke the lease: the node key (and all it holds) goes at once."""
        lease, self.lease_id = self.lease_id, 0
        self.registered.clear()
        if lease:
            await self._etcd.revoke(lease)
            log.info("node %s left the cluster", self.info.name)
