"""Placement simulation: 1,000 nodes x 10,000 partitions with `--replicas 3`. Not a test.

What it runs, in one process of coroutines, against a private etcd it starts:

- N simulated nodes (--nodes, default 1,000), each doing only what a real node does for
  membership and placement, through the project's own code: `Membership.register` (a lease and
  a create-if-absent key), `Membership.keep_alive` (a LeaseKeepAlive every min(TTL/3, 2) s) and
  `follow_members` (a read of `<ns>/nodes/`, then a watch of its own). The nodes share
  --channels gRPC channels (a real node has one each); every node has its own watch stream;
- P partitions (--partitions, default 10,000) of 2 queues with `replicas` K (--replicas,
  default 3), written in transactions of 100 puts. The map is read and watched once for the
  process (`follow_map`), not once per node: it is the same for every node, and 1,000 reads of
  10,000 entries would measure this process's JSON decoding rather than placement. A real node's
  own read of the map is measured alone (one `read_map`);
- placement: every simulated node computes its partitions from ITS OWN view of the members
  (`placement.Assignments`, the class `node.py` uses). Nodes whose views are equal share one
  computation (a cache keyed by the view), which is what keeps 1,000 nodes in one process to
  minutes: a view is computed from scratch once, each later one from the previous by
  `Assignments.update` (a death recomputes the ~K/N partitions the dead node ran, a join scores
  one name per partition).

Phases: start and settle; idle (keep-alives only) for --idle seconds; one node "killed" (its
keep-alive stops, no revoke: the lease expires as after kill -9); --join nodes join. After
each, once every node's view is the same: every partition on exactly K nodes (counted over what
each node computed for itself), the spread per node (max / mean / min), the assignments that
moved, and etcd's load over the phase (gRPC calls by method from etcd's /metrics, watch messages
sent, db size, RSS, CPU).

`--json` prints {"section": "placement", "figure", "value", "unit"} rows; otherwise a table.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from roger_cluster.cluster import keys
from roger_cluster.cluster.etcd import Etcd, op_put
from roger_cluster.cluster.membership import Membership, NodeInfo, follow_members
from roger_cluster.cluster.partitions import PartitionMap, PartitionSpec, follow_map, read_map
from roger_cluster.config import EtcdConfig
from roger_cluster.placement import Assignments
from roger_cluster.testing.servers import EtcdServer

NAMESPACE = "sim"
View = frozenset[str]  # the live members' names: simulated nodes carry no labels


@dataclass(frozen=True)
class Row:
    """One figure, as `--json` prints it."""

    figure: str
    value: float
    unit: str

    def as_json(self) -> dict[str, object]:
        return {
            "section": "placement",
            "figure": self.figure,
            "value": round(self.value, 3),
            "unit": self.unit,
        }


class Counted(logging.Handler):
    """Counts the project's warnings (watch restarts, expired leases) instead of printing
    thousands of lines; the counts are figures of the run (0 in a healthy one)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        key = record.msg.split("%", 1)[0].strip()
        if not self.counts[key]:
            say(f"first warning of its kind: {record.getMessage()}")
        self.counts[key] += 1


WARNINGS = Counted()


def say(text: str) -> None:
    print(f"[sim {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def etcd_metrics(url: str) -> dict[str, float]:
    """etcd's Prometheus metrics, one entry per series (name{labels} -> value)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def by_method(metrics: Mapping[str, float], series: str) -> Counter[str]:
    """A gRPC counter summed per method."""
    counts: Counter[str] = Counter()
    for key, value in metrics.items():
        if key.startswith(series + "{"):
            method = key.split('grpc_method="', 1)[1].split('"', 1)[0]
            counts[method] += int(value)
    return counts


@dataclass
class Load:
    """etcd and this process between two points in time."""

    started: float
    metrics: dict[str, float]
    own_cpu: float

    @classmethod
    def now(cls, url: str) -> Load:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(time.monotonic(), etcd_metrics(url), usage.ru_utime + usage.ru_stime)


class Views:
    """Placement per view of the members, computed once per distinct view (see the docstring)."""

    def __init__(self, partitions: Callable[[], PartitionMap]) -> None:
        self._partitions = partitions
        self._done: dict[View, dict[str, frozenset[str]]] = {}  # view -> node -> its partitions
        self._pending: dict[View, asyncio.Future[dict[str, frozenset[str]]]] = {}
        self._latest: Assignments | None = None
        self.computed: list[tuple[str, float]] = []  # (how, seconds) per view computed

    async def of(self, view: View, members: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
        if (done := self._done.get(view)) is not None:
            return done
        if view not in self._pending:
            self._pending[view] = asyncio.ensure_future(self._compute(view, dict(members)))
        return await self._pending[view]

    async def _compute(self, view: View, members: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
        base, partitions = self._latest, self._partitions()

        def work() -> tuple[Assignments, dict[str, frozenset[str]], float]:
            began = time.process_time()
            assignments = Assignments() if base is None else base.copy()
            assignments.update(partitions, members)
            seconds = time.process_time() - began  # CPU of the update alone, not the copy or index
            mine: dict[str, set[str]] = {name: set() for name in members}
            for name in partitions:
                for node in assignments.nodes_of(name):
                    mine[node].add(name)
            return assignments, {n: frozenset(p) for n, p in mine.items()}, seconds

        # In a thread: the keep-alives of this process go on while a view is computed.
        assignments, index, seconds = await asyncio.to_thread(work)
        self.computed.append(("from scratch" if base is None else "from the previous view", seconds))
        self._latest = assignments
        self._done[view] = index
        del self._pending[view]
        return index


@dataclass
class SimNode:
    """One simulated node: membership and placement, nothing else."""

    name: str
    etcd: Etcd
    ttl: int
    membership: Membership = field(init=False)
    view: View = frozenset()
    changed_at: float = 0.0  # when its view last changed
    partitions: frozenset[str] = frozenset()
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.membership = Membership(self.etcd, NAMESPACE, NodeInfo.here(self.name), self.ttl)

    async def join(self) -> None:
        await self.membership.register()
        self.tasks.append(asyncio.create_task(self.membership.keep_alive()))

    def follow(self, views: Views) -> None:
        async def on_change(members: Mapping[str, frozenset[str]]) -> None:
            view = frozenset(members)  # names only (no labels here): cheap for 1,000 nodes per event
            self.changed_at = time.monotonic()
            index = await views.of(view, members)
            self.view, self.partitions = view, index.get(self.name, frozenset())

        self.tasks.append(asyncio.create_task(follow_members(self.etcd, NAMESPACE, on_change)))

    async def crash(self) -> None:
        """Stop as kill -9 would: no revoke; the lease expires by itself."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    async def leave(self) -> None:
        await self.crash()
        await self.membership.leave()


@dataclass
class Sim:
    args: argparse.Namespace
    server: EtcdServer
    clients: list[Etcd]
    nodes: dict[str, SimNode] = field(default_factory=dict)
    partitions: PartitionMap = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    def add(self, figure: str, value: float, unit: str) -> None:
        self.rows.append(Row(figure, value, unit))
        say(f"{figure}: {value:,.3f} {unit}")

    def new_node(self, name: str) -> SimNode:
        node = SimNode(name, self.clients[len(self.nodes) % len(self.clients)], self.args.ttl)
        self.nodes[name] = node
        return node

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.tasks]

    async def settled(self, timeout: float) -> float:
        """Wait until every live node's view is the live set and its placement computed."""
        began = time.monotonic()
        expected = frozenset(n.name for n in self.live())
        while any(n.view != expected for n in self.live()):
            if time.monotonic() - began > timeout:
                behind = sum(n.view != expected for n in self.live())
                raise TimeoutError(f"{behind} node(s) still behind after {timeout:g}s")
            await asyncio.sleep(0.1)
        return time.monotonic() - began

    def assignments(self) -> set[tuple[str, str]]:
        return {(p, n.name) for n in self.live() for p in n.partitions}

    def check(self, where: str) -> set[tuple[str, str]]:
        """Every partition on exactly K nodes, as the nodes computed it; the spread per node."""
        pairs = self.assignments()
        per_partition = Counter(p for p, _ in pairs)
        k = min(self.args.replicas, len(self.live()))
        wrong = [p for p in self.partitions if per_partition[p] != k]
        self.add(f"partitions not on exactly {k} nodes, {where}", len(wrong), "partitions")
        if wrong:
            raise AssertionError(f"{len(wrong)} partitions not on {k} nodes, e.g. {wrong[:3]}")
        per_node = [len(n.partitions) for n in self.live()]
        mean = statistics.fmean(per_node)
        self.add(f"partitions per node, {where} (mean)", mean, "partitions")
        self.add(f"partitions per node, {where} (max / mean)", max(per_node) / mean, "ratio")
        self.add(f"partitions per node, {where} (min / mean)", min(per_node) / mean, "ratio")
        return pairs

    def load(self, since: Load, where: str) -> Load:
        now = Load.now(self.server.client_url)
        seconds = now.started - since.started
        started = by_method(now.metrics, "grpc_server_started_total") - by_method(
            since.metrics, "grpc_server_started_total"
        )
        sent = by_method(now.metrics, "grpc_server_msg_sent_total") - by_method(
            since.metrics, "grpc_server_msg_sent_total"
        )
        self.add(f"phase length, {where}", seconds, "s")
        for method in ("Range", "Txn", "Put", "LeaseGrant", "LeaseKeepAlive", "Watch", "LeaseRevoke"):
            if started[method]:
                self.add(f"etcd {method} calls, {where}", started[method], "calls")
        self.add(f"etcd LeaseKeepAlive rate, {where}", started["LeaseKeepAlive"] / seconds, "calls/s")
        self.add(f"etcd watch messages sent, {where}", sent["Watch"], "messages")
        for series, what in (("etcd_mvcc_put_total", "puts"), ("etcd_mvcc_delete_total", "deletes")):
            self.add(f"etcd {what}, {where}", now.metrics.get(series, 0) - since.metrics.get(series, 0), what)
        events = "etcd_debugging_mvcc_events_total"
        self.add(
            f"etcd watch events sent, {where}",
            now.metrics.get(events, 0) - since.metrics.get(events, 0),
            "events",
        )
        cpu = now.metrics.get("process_cpu_seconds_total", 0) - since.metrics.get(
            "process_cpu_seconds_total", 0
        )
        self.add(f"etcd CPU, {where}", cpu / seconds * 100, "% of a core")
        self.add(
            f"simulation process CPU, {where}", (now.own_cpu - since.own_cpu) / seconds * 100, "% of a core"
        )
        self.add(
            f"etcd RSS, end of {where}", now.metrics.get("process_resident_memory_bytes", 0) / 2**20, "MiB"
        )
        self.add(
            f"etcd db size, end of {where}",
            now.metrics.get("etcd_mvcc_db_total_size_in_bytes", 0) / 2**20,
            "MiB",
        )
        self.add(
            f"etcd watchers, end of {where}",
            now.metrics.get("etcd_debugging_mvcc_watcher_total", -1),
            "watchers",
        )
        self.add(f"watch restarts so far, end of {where}", WARNINGS.counts["watch of"], "restarts")
        self.add(f"leases expired so far, end of {where}", WARNINGS.counts["lease of node"], "leases")
        return now

    def moved(self, before: set[tuple[str, str]], after: set[tuple[str, str]], where: str) -> None:
        self.add(f"assignments moved, {where}", len(after - before), "assignments")
        self.add(f"partitions that moved, {where}", len({p for p, _ in after - before}), "partitions")


async def write_map(etcd: Etcd, count: int, replicas: int) -> PartitionMap:
    specs = {
        f"p{i:05d}": PartitionSpec(f"p{i:05d}", {"default": 10, "other": 5}, replicas=replicas)
        for i in range(count)
    }
    batch: list[PartitionSpec] = []
    for spec in specs.values():
        batch.append(spec)
        if len(batch) == 100:
            await etcd.txn([], [op_put(keys.partition(NAMESPACE, s.name), s.encode()) for s in batch])
            batch.clear()
    if batch:
        await etcd.txn([], [op_put(keys.partition(NAMESPACE, s.name), s.encode()) for s in batch])
    return specs


def viewed(nodes: list[SimNode]) -> bool:
    """Whether each of `nodes` has read the members and computed its placement once."""
    return all(node.view for node in nodes)


async def until(check: Callable[[], bool], timeout: float) -> None:
    """Poll `check` until it holds; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still waiting after {timeout:g}s")
        await asyncio.sleep(0.05)


async def in_batches(items: list[Callable[[], Awaitable[None]]], size: int = 50) -> None:
    for i in range(0, len(items), size):
        await asyncio.gather(*(make() for make in items[i : i + size]))


async def simulate(sim: Sim) -> None:
    a = sim.args
    etcd = sim.clients[0]
    load = Load.now(sim.server.client_url)

    began = time.monotonic()
    await write_map(etcd, a.partitions, a.replicas)
    sim.add(f"writing {a.partitions:,} partitions (transactions of 100 puts)", time.monotonic() - began, "s")
    began = time.monotonic()
    await read_map(etcd, NAMESPACE)
    sim.add("one node's read of the whole map (read_map)", time.monotonic() - began, "s")
    map_ready = asyncio.Event()

    async def on_map(partitions: PartitionMap) -> None:
        sim.partitions = partitions
        if len(partitions) == a.partitions:
            map_ready.set()

    map_task = asyncio.create_task(follow_map(etcd, NAMESPACE, on_map))
    await asyncio.wait_for(map_ready.wait(), 120)
    views = Views(lambda: sim.partitions)

    began = time.monotonic()
    first = [sim.new_node(f"sim{i:04d}") for i in range(a.nodes)]
    await in_batches([n.join for n in first])
    sim.add(f"{a.nodes:,} nodes registered (50 at a time)", time.monotonic() - began, "s")
    began = time.monotonic()
    # The watches start 50 at a time (each batch once it has read the members): 1,000 reads of
    # 1,000 node keys at once would measure this one process's decoding, not etcd, and starve its
    # own keep-alives. Real nodes are 1,000 processes.
    for i in range(0, len(first), 50):
        batch = first[i : i + 50]
        for node in batch:
            node.follow(views)
        await until(functools.partial(viewed, batch), 600)
    await sim.settled(600)
    sim.add(
        f"every node read the members and computed its placement ({a.nodes:,} watches)",
        time.monotonic() - began,
        "s",
    )
    where = f"{a.nodes:,} nodes"
    settled = sim.check(where)
    load = sim.load(load, f"start ({where})")

    await asyncio.sleep(a.idle)
    load = sim.load(load, f"idle for {a.idle:g}s ({where})")

    victim = sim.nodes[sorted(sim.nodes)[len(sim.nodes) // 2]]
    remaining = await etcd.lease_ttl(victim.membership.lease_id)
    await victim.crash()
    killed = time.monotonic()
    await sim.settled(a.ttl * 3 + 30)
    seen = [n.changed_at - killed for n in sim.live()]
    sim.add("one node killed: its lease's remaining TTL at the kill", remaining.remaining, "s")
    sim.add("one node killed: the first node to see it gone", min(seen), "s")
    sim.add("one node killed: the last node to see it gone", max(seen), "s")
    sim.add(
        f"one node killed: every other node's placement without it (lease TTL {a.ttl}s)",
        time.monotonic() - killed,
        "s",
    )
    where = f"{a.nodes - 1:,} nodes"
    after_death = sim.check(f"after one death ({where})")
    sim.moved(settled, after_death, "one node died")
    load = sim.load(load, "one node died")

    began = time.monotonic()
    newcomers = [sim.new_node(f"new{i:03d}") for i in range(a.join)]
    await in_batches([n.join for n in newcomers])
    for node in newcomers:
        node.follow(views)
    await sim.settled(300)
    sim.add(f"{a.join} nodes joined: every node's placement with them", time.monotonic() - began, "s")
    after_join = sim.check(f"after {a.join} joined ({a.nodes - 1 + a.join:,} nodes)")
    sim.moved(after_death, after_join, f"{a.join} nodes joined")
    sim.add(
        f"expected move for {a.join} joins (assignments x joined / nodes)",
        len(after_death) * a.join / len(sim.live()),
        "assignments",
    )
    sim.load(load, f"{a.join} nodes joined")

    scratch = [s for h, s in views.computed if h == "from scratch"]
    later = [s for h, s in views.computed if h != "from scratch"]
    sim.add("distinct views computed (each shared by the nodes that held it)", len(views.computed), "views")
    sim.add("placement CPU for a view from scratch", max(scratch, default=0), "s")
    sim.add("placement CPU for a view from the previous one (max)", max(later, default=0), "s")
    sim.add("watch restarts (etcd too slow to answer)", WARNINGS.counts["watch of"], "restarts")
    sim.add("leases expired and registered again", WARNINGS.counts["lease of node"], "leases")
    for message, count in WARNINGS.counts.items():
        say(f"warning x{count}: {message}")

    map_task.cancel()
    await asyncio.gather(map_task, return_exceptions=True)
    leaving = sim.live()
    for node in leaving:  # every watch first: 1,000 revokes would each be an event for every node
        await node.crash()
    await in_batches([n.leave for n in leaving], 100)


async def run(args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="roger-sim-") as tmp:
        server = EtcdServer(Path(tmp, "etcd"))
        try:
            await asyncio.to_thread(server.start)
            config = EtcdConfig.from_string(server.endpoint.endpoints, NAMESPACE)
            clients = [Etcd(config) for _ in range(args.channels)]
            for client in clients:
                await client.connect()
            sim = Sim(args, server, clients)
            try:
                await simulate(sim)
            finally:
                for node in sim.nodes.values():
                    await node.crash()
                for client in clients:
                    await client.close()
            return sim.rows
        finally:
            server.cleanup()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="roger_cluster placement simulation (see the module docstring)")
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--partitions", type=int, default=10_000)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--join", type=int, default=10, help="nodes that join in the last phase")
    p.add_argument("--ttl", type=int, default=10, help="lease TTL in seconds (roger-node's default: 10)")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of keep-alives only")
    p.add_argument("--channels", type=int, default=10, help="gRPC channels the nodes share")
    p.add_argument("--json", action="store_true", help="print JSON rows on stdout; progress on stderr")
    return p.parse_args(argv)


def main() -> int:
    args = parse_args()
    logging.getLogger("roger_cluster").addHandler(WARNINGS)
    logging.getLogger("roger_cluster").propagate = False
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the private etcd is stopped
    load = os.getloadavg()
    began = time.monotonic()
    rows = asyncio.run(run(args))
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=1))
        return 0
    print(f"machine: nproc {os.cpu_count()}; Python {sys.version.split()[0]}; load before: {load[0]:.2f}")
    took = time.monotonic() - began
    print(
        f"{args.nodes:,} nodes, {args.partitions:,} partitions, replicas {args.replicas}; run {took:.0f}s\n"
    )
    print("| figure | value | unit |\n|---|---:|---|")
    for r in rows:
        print(f"| {r.figure} | {r.value:,.2f} | {r.unit} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
