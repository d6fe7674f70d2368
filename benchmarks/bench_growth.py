"""Growth benchmark: what more partitions and more nodes cost on one machine. Not a test.

Each case starts K `roger-node` subprocesses on a fresh etcd namespace, declares the queues of N
partitions of 2 queues (concurrency 2 and 1), then puts the partitions into etcd (transactions of
up to 64 puts): `Client.start_partition`'s order, declares first. It measures:

- convergence: from just before the first put to the last node's logged consume-ok of the last
  queue (every node consumes every queue; checked again through the management API);
- node memory: RSS of each node process (/proc/<pid>/status), before the puts and once converged;
- one more partition: from just before its etcd put to the last node's consume-ok of its 2 queues
  (median of a few), and the etcd requests the nodes made for it (etcd's gRPC counters);
- resources: per node AMQP connections, channels and consumers (management API); etcd watchers and
  watch streams (etcd /metrics), keys and leases of the namespace; broker and etcd memory.

Cases: N in --sizes on each of --clusters node counts, --nodes node counts with
--scale-partitions partitions, and --big partitions on one node (2,500 = 5,000 queues, past the
1,020 partitions a node could consume when it held a channel per queue; not in --quick).
etcd is a private server; RabbitMQ is --amqp-url if its management API answers, else a private
broker started here (the API is how the console's figures are read).
Every queue made is deleted, every process killed, every wait bounded, even after an error.

`--json` prints a list of {"section": "growth", "figure", "value", "unit"} rows on stdout;
otherwise a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aio_pika

from roger_cluster.broker import Broker
from roger_cluster.cluster import keys
from roger_cluster.cluster.etcd import Etcd, op_put
from roger_cluster.cluster.partitions import PartitionSpec
from roger_cluster.config import AmqpConfig, EtcdConfig
from roger_cluster.management import Management, ManagementError
from roger_cluster.names import buried_queue_name, history_stream_name, queue_name, release_queue_name
from roger_cluster.testing.nodes import NodeFactory, NodeProcess
from roger_cluster.testing.servers import EtcdServer, RabbitServer

QUEUES = {"default": 2, "other": 1}
PUTS_PER_TXN = 64  # etcd allows 128 operations per transaction by default
DECLARES_AT_ONCE = 50
CONSUME_OK = re.compile(rb"consuming (\S+) with prefetch \d+ \(consume-ok at ([0-9.]+)\)")
POLL = 0.05
NODE_START_TIMEOUT = 60.0
ONE_MORE_TIMEOUT = 30.0
MIB = 1024 * 1024
MANAGEMENT_TIMEOUT = 60.0

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """The command line, typed."""

    amqp_url: str
    management_url: str | None
    private_rabbitmq: bool
    queue_type: str
    big_queue_type: str
    sizes: tuple[int, ...]
    clusters: tuple[int, ...]
    nodes: tuple[int, ...]
    scale_partitions: int
    big: int
    one_more: int
    json: bool


@dataclass(frozen=True)
class Row:
    """One figure, as `--json` prints it."""

    figure: str
    value: float
    unit: str

    def as_json(self) -> dict[str, object]:
        return {"section": "growth", "figure": self.figure, "value": round(self.value, 3), "unit": self.unit}


@dataclass(frozen=True)
class BrokerMemory:
    """Bytes of the broker's memory: in all, in queue processes, in connections and channels."""

    rss: float
    queues: float
    connections: float

    def minus(self, other: BrokerMemory) -> BrokerMemory:
        return BrokerMemory(
            self.rss - other.rss, self.queues - other.queues, self.connections - other.connections
        )


@dataclass
class Case:
    """What one (nodes, partitions) case measured."""

    nodes: int
    partitions: int
    queue_type: str = ""  # when not --queue-type (the --big case)
    converge_s: float = 0.0
    rss_before_mib: list[float] = field(default_factory=list)
    rss_after_mib: list[float] = field(default_factory=list)
    one_more_ms: list[float] = field(default_factory=list)
    one_more_cpu_ms: list[float] = field(default_factory=list)  # node CPU per start, mean over nodes
    converge_cpu_s: float = 0.0  # node CPU spent converging, mean over nodes
    declare_s: float = 0.0  # the client declaring the partitions' queues before the puts
    etcd_requests_per_start: float = 0.0  # by all nodes together, per partition start
    connections: int = 0
    channels: int = 0
    consumers: int = 0
    watchers: float = 0.0
    watch_streams: float = 0.0
    keys: int = 0
    leases: int = 0
    broker: BrokerMemory = field(default_factory=lambda: BrokerMemory(0, 0, 0))  # growth over the case
    etcd_rss_mib: float = 0.0


async def bounded(what: str, awaitable: Awaitable[T], timeout: float) -> T:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise RuntimeError(f"{what} took longer than {timeout:.0f}s") from None


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ConsumeLog:
    """Reads the nodes' logs as they grow: which queue each node consumes since when."""

    def __init__(self, nodes: list[NodeProcess]) -> None:
        self.nodes = nodes
        self._offsets = [0] * len(nodes)
        self._partial = [b""] * len(nodes)
        self.seen: list[dict[str, float]] = [{} for _ in nodes]  # queue -> latest consume-ok

    def read(self) -> None:
        for i, node in enumerate(self.nodes):
            try:
                with open(node.log_path, "rb") as f:
                    f.seek(self._offsets[i])
                    data = f.read()
            except FileNotFoundError:
                continue
            self._offsets[i] += len(data)
            *lines, self._partial[i] = (self._partial[i] + data).split(b"\n")
            for line in lines:
                if (found := CONSUME_OK.search(line)) is not None:
                    self.seen[i][found[1].decode()] = float(found[2])

    async def wait(self, queues: list[str], after: float, timeout: float) -> float:
        """The last consume-ok time, over every node, of every queue in `queues` since `after`."""

        async def done() -> float:
            while True:
                self.read()
                times = [seen.get(q, 0.0) for seen in self.seen for q in queues]
                if min(times) >= after:
                    return max(times)
                if dead := [n for n in self.nodes if n.returncode is not None]:
                    raise RuntimeError(f"node {dead[0].name} exited:\n{dead[0].log()[-3000:]}")
                await asyncio.sleep(POLL)

        return await bounded(f"{len(queues)} queues on {len(self.nodes)} nodes", done(), timeout)


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


def grpc_requests(metrics: dict[str, float]) -> float:
    """gRPC calls etcd has started, every method but the long-lived Watch and LeaseKeepAlive."""
    return sum(
        v
        for k, v in metrics.items()
        if k.startswith("grpc_server_started_total{") and 'grpc_type="unary"' in k
    )


@dataclass
class Bench:
    """What every case shares."""

    args: Options
    tag: str
    workdir: Path
    etcd_server: EtcdServer
    etcd: Etcd
    amqp_url: str
    management: Management
    amqp: aio_pika.abc.AbstractConnection
    broker: Broker  # declares the partitions' queues, as `Client.start_partition` does
    created: list[str] = field(default_factory=list)  # partitions whose queues to delete
    factories: list[NodeFactory] = field(default_factory=list)
    cases: dict[tuple[int, int], Case] = field(default_factory=dict)
    big_cases: dict[tuple[int, int], Case] = field(default_factory=dict)  # of --big-queue-type
    declarer: Broker | None = None  # the broker of the case running (another queue type)

    def factory(self, namespace: str, queue_type: str) -> NodeFactory:
        env = {"ROGER_QUEUE_TYPE": queue_type, "ROGER_LOG_LEVEL": "info"}
        folder = self.workdir / namespace
        folder.mkdir()
        made = NodeFactory(
            self.amqp_url, self.etcd_server.endpoint.endpoints, namespace, folder, extra_env=env
        )
        self.factories.append(made)
        return made

    async def declare(self, names: list[str]) -> float:
        """Declare the partitions' queues (and buried queues) before they go into the map,
        as `Client.start_partition` does; returns the seconds it took.

        Not counted in convergence: nodes that find a partition in the map before its
        quorum queues exist race to create them, and RabbitMQ 3.10 can then crash the
        channel of a node's `basic.consume` (the queue's Raft member not started yet)
        and close that node's connection (541 INTERNAL_ERROR). See docs/scale.md.
        """
        self.created.extend(names)
        started = time.perf_counter()
        for start in range(0, len(names), DECLARES_AT_ONCE):
            chunk = names[start : start + DECLARES_AT_ONCE]
            broker = self.declarer or self.broker
            await asyncio.gather(*(broker.declare(n, q) for n in chunk for q in QUEUES))
        return time.perf_counter() - started

    async def put(self, namespace: str, names: list[str]) -> None:
        """Put partitions into the map, a transaction per PUTS_PER_TXN of them."""
        for start in range(0, len(names), PUTS_PER_TXN):
            ops = [
                op_put(keys.partition(namespace, n), PartitionSpec(n, QUEUES).encode())
                for n in names[start : start + PUTS_PER_TXN]
            ]
            await self.etcd.txn([], ops)

    async def delete_queues(self) -> None:
        channel = await self.amqp.channel()
        try:
            while self.created:
                partition = self.created.pop()
                for queue in QUEUES:
                    await channel.queue_delete(queue_name(partition, queue))
                    await channel.queue_delete(buried_queue_name(partition, queue))
            for factory in self.factories:  # the nodes' key releases and job history, per namespace
                await channel.queue_delete(release_queue_name(factory.namespace))
                await channel.queue_delete(history_stream_name(factory.namespace))
        finally:
            await channel.close()

    async def broker_memory(self) -> BrokerMemory:
        """The broker's memory breakdown (`/api/nodes/<node>/memory`)."""
        nodes = await self.management.api("/api/nodes?columns=name")
        assert isinstance(nodes, list) and nodes
        name = urllib.parse.quote(nodes[0]["name"], safe="")
        reply = await self.management.api(f"/api/nodes/{name}/memory")
        assert isinstance(reply, dict)
        memory = reply["memory"]

        def total(*parts: str) -> float:
            return sum(float(memory.get(p, 0)) for p in parts)

        return BrokerMemory(
            rss=float(memory["total"]["rss"]),
            queues=total("queue_procs", "quorum_queue_procs", "quorum_queue_dlx_procs", "quorum_ets"),
            connections=total(
                "connection_channels", "connection_readers", "connection_writers", "connection_other"
            ),
        )

    async def case(self, nodes: int, partitions: int, queue_type: str | None = None) -> Case:
        """Measure one case (once: the sections share cases); of --queue-type unless given."""
        if queue_type is None or queue_type == self.args.queue_type:
            cases, queue_type = self.cases, self.args.queue_type
        else:
            cases = self.big_cases
        if (nodes, partitions) not in cases:
            say(f"case: {partitions} partitions x {len(QUEUES)} {queue_type} queues on {nodes} node(s)")
            if queue_type != self.args.queue_type:
                self.declarer = Broker(AmqpConfig(url=self.amqp_url, queue_type=queue_type))
                await self.declarer.connect()
            try:
                cases[nodes, partitions] = await self._run_case(nodes, partitions, queue_type)
            finally:
                if self.declarer is not None:
                    await self.declarer.close()
                    self.declarer = None
            say(f"  {describe(cases[nodes, partitions])}")
        return cases[nodes, partitions]

    async def _run_case(self, count: int, partitions: int, queue_type: str) -> Case:
        namespace = f"{self.tag}k{count}n{partitions}{queue_type[0]}"
        factory = self.factory(namespace, queue_type)
        result = Case(count, partitions, "" if queue_type == self.args.queue_type else queue_type)
        try:
            memory_before = await self.broker_memory()
            nodes = await bounded(
                "starting nodes", factory.start_many(count), NODE_START_TIMEOUT + 10 * count
            )
            watch = ConsumeLog(nodes)
            result.rss_before_mib = [rss_mib(n.pid) for n in nodes]
            names = [f"{namespace}p{i}" for i in range(partitions)]
            queues = [queue_name(n, q) for n in names for q in QUEUES]
            result.declare_s = await self.declare(names)
            cpu = sum(cpu_s(n.pid) for n in nodes)
            started = time.time()
            await self.put(namespace, names)
            last = await watch.wait(queues, started, 60 + 0.5 * partitions * count)
            result.converge_cpu_s = (sum(cpu_s(n.pid) for n in nodes) - cpu) / count
            result.converge_s = last - started
            say(f"  converged in {result.converge_s:.2f}s")
            await self._resources(result, namespace, names, nodes)
            result.broker = (await self.broker_memory()).minus(memory_before)
            await self._one_more(result, namespace, watch, nodes)
            await asyncio.sleep(1.0)  # let the nodes settle (their last converge, GC) before RSS
            result.rss_after_mib = [rss_mib(n.pid) for n in nodes]
            result.etcd_rss_mib = rss_mib(self._etcd_pid())
        finally:
            factory.cleanup()
            await self.etcd.delete_prefix(namespace + "/")
            await self.delete_queues()
        return result

    def _etcd_pid(self) -> int:
        pid = self.etcd_server.pid
        assert pid is not None
        return pid

    async def _resources(
        self, result: Case, namespace: str, names: list[str], nodes: list[NodeProcess]
    ) -> None:
        expected = len(names) * len(QUEUES) * len(nodes)
        prefix = f"{namespace}p"

        async def consumers() -> int:
            queues = await self.management.api("/api/queues/%2F?columns=name,consumers")
            assert isinstance(queues, list)
            mains = [q for q in queues if q["name"].startswith(prefix) and "." not in q["name"]]
            return sum(int(q.get("consumers", 0)) for q in mains)

        deadline = time.monotonic() + 60
        while (seen := await consumers()) != expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the management API shows {seen} consumers, not {expected}")
            await asyncio.sleep(0.5)
        result.consumers = seen
        await asyncio.sleep(1.5)  # one more statistics cycle for the channel counts
        connections = await self.management.api("/api/connections?columns=user_provided_name,channels")
        assert isinstance(connections, list)
        names_of_nodes = {n.name for n in nodes}
        mine = [c for c in connections if c.get("user_provided_name") in names_of_nodes]
        result.connections = len(mine)
        result.channels = sum(int(c.get("channels", 0)) for c in mine)
        metrics = etcd_metrics(self.etcd_server.client_url)
        result.watchers = metrics.get("etcd_debugging_mvcc_watcher_total", -1)
        result.watch_streams = metrics.get("etcd_debugging_mvcc_watch_stream_total", -1)
        kvs, _ = await self.etcd.get_prefix(namespace + "/")
        result.keys = len(kvs)
        result.leases = len({kv.lease for kv in kvs if kv.lease})

    async def _one_more(
        self, result: Case, namespace: str, watch: ConsumeLog, nodes: list[NodeProcess]
    ) -> None:
        requests: list[float] = []
        for i in range(self.args.one_more):
            name = f"{namespace}x{i}"
            await self.declare([name])
            await asyncio.sleep(0.3)  # the nodes are idle: what they spend next is for this start
            before = grpc_requests(etcd_metrics(self.etcd_server.client_url))
            cpu = sum(cpu_s(n.pid) for n in nodes)
            started = time.time()
            await self.put(namespace, [name])  # one transaction: one of the requests counted
            last = await watch.wait([queue_name(name, q) for q in QUEUES], started, ONE_MORE_TIMEOUT)
            result.one_more_ms.append((last - started) * 1000)
            await asyncio.sleep(0.3)  # requests the nodes make after consume-ok count too
            after = grpc_requests(etcd_metrics(self.etcd_server.client_url))
            result.one_more_cpu_ms.append((sum(cpu_s(n.pid) for n in nodes) - cpu) * 1000 / len(nodes))
            requests.append(after - before - 1)
        result.etcd_requests_per_start = statistics.median(requests) if requests else 0.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def describe(c: Case) -> str:
    return (
        f"converged in {c.converge_s:.2f}s; RSS/node {max(c.rss_after_mib):.1f} MiB;"
        f" one more: {statistics.median(c.one_more_ms) if c.one_more_ms else 0:.1f} ms,"
        f" node CPU {statistics.median(c.one_more_cpu_ms) if c.one_more_cpu_ms else 0:.1f} ms;"
        f" converge CPU {c.converge_cpu_s:.2f}s;"
        f" {c.connections} connections, {c.channels} channels, {c.consumers} consumers;"
        f" etcd {c.watchers:.0f} watchers / {c.watch_streams:.0f} streams, {c.keys} keys, {c.leases} leases"
    )


def case_rows(c: Case) -> Iterator[Row]:
    kind = f"{c.queue_type} " if c.queue_type else ""
    where = f"{c.partitions} {kind}partitions, {c.nodes} node{'s' if c.nodes > 1 else ''}"
    k = c.nodes
    yield Row(f"declaring the queues before the puts (client), {where}", c.declare_s, "s")
    yield Row(f"convergence, {where}", c.converge_s, "s")
    yield Row(f"node CPU to converge, {where} (per node)", c.converge_cpu_s, "s")
    yield Row(f"node RSS before the partitions, {where} (max)", max(c.rss_before_mib), "MiB")
    yield Row(f"node RSS converged, {where} (max)", max(c.rss_after_mib), "MiB")
    if c.one_more_ms:
        yield Row(f"one more partition start, {where} (median)", statistics.median(c.one_more_ms), "ms")
        cpu = statistics.median(c.one_more_cpu_ms)
        yield Row(f"node CPU per one more partition start, {where} (median, per node)", cpu, "ms")
    yield Row(
        f"etcd requests by the nodes per partition start, {where} (per node)",
        c.etcd_requests_per_start / k,
        "requests",
    )
    yield Row(f"AMQP connections per node, {where}", c.connections / k, "connections")
    yield Row(f"AMQP channels per node, {where}", c.channels / k, "channels")
    yield Row(f"consumers per node, {where}", c.consumers / k, "consumers")
    yield Row(f"etcd watchers, {where} (all nodes)", c.watchers, "watchers")
    yield Row(f"etcd watch streams, {where} (all nodes)", c.watch_streams, "streams")
    yield Row(f"etcd keys in the namespace, {where}", c.keys, "keys")
    yield Row(f"etcd leases in the namespace, {where}", c.leases, "leases")
    queues = c.partitions * len(QUEUES) * 2  # each with its buried queue
    yield Row(f"broker RSS growth, {where}", c.broker.rss / MIB, "MiB")
    yield Row(f"broker memory per queue (queue processes), {where}", c.broker.queues / queues / 1024, "KiB")
    if c.channels:
        per_channel = c.broker.connections / c.channels / 1024
        yield Row(f"broker memory per channel (connections and channels), {where}", per_channel, "KiB")
    yield Row(f"etcd RSS, {where}", c.etcd_rss_mib, "MiB")


def slopes(cases: dict[tuple[int, int], Case]) -> Iterator[Row]:
    """Per-partition costs: the slope between the smallest and the largest size on one node count."""
    by_nodes: dict[int, list[Case]] = {}
    for c in cases.values():
        by_nodes.setdefault(c.nodes, []).append(c)
    for k, found in sorted(by_nodes.items()):
        found.sort(key=lambda c: c.partitions)
        small, large = found[0], found[-1]
        added = large.partitions - small.partitions
        if added <= 0:
            continue
        kind = f"{large.queue_type} " if large.queue_type else ""
        span = f"{small.partitions} to {large.partitions} {kind}partitions, {k} node{'s' if k > 1 else ''}"
        node_kib = (statistics.mean(large.rss_after_mib) - statistics.mean(small.rss_after_mib)) * 1024
        yield Row(f"node RSS per partition ({span})", node_kib / added, "KiB")
        yield Row(
            f"channels per partition per node ({span})",
            (large.channels - small.channels) / k / added,
            "channels",
        )
        yield Row(
            f"consumers per partition per node ({span})",
            (large.consumers - small.consumers) / k / added,
            "consumers",
        )
        yield Row(
            f"etcd watchers per partition ({span})", (large.watchers - small.watchers) / added, "watchers"
        )
        yield Row(f"etcd keys per partition ({span})", (large.keys - small.keys) / added, "keys")
        broker = (large.broker.rss - small.broker.rss) / 1024
        yield Row(f"broker RSS per partition ({span})", broker / added, "KiB")
        yield Row(
            f"convergence time per partition ({span})",
            (large.converge_s - small.converge_s) * 1000 / added,
            "ms",
        )


async def run_cases(bench: Bench) -> list[Row]:
    args = bench.args
    rows: list[Row] = []
    for k in args.clusters:
        for n in args.sizes:
            rows.extend(case_rows(await bench.case(k, n)))
    for k in args.nodes:
        c = await bench.case(k, args.scale_partitions)
        if (k, c.partitions) not in {(k2, n2) for k2 in args.clusters for n2 in args.sizes}:
            rows.extend(case_rows(c))
    rows.extend(
        slopes({key: c for key, c in bench.cases.items() if key[0] in args.clusters and key[1] in args.sizes})
    )
    if args.big:
        # Its own small case, of its queue type, for the per-partition slopes.
        small = await bench.case(1, min(args.sizes), args.big_queue_type)
        big = await bench.case(1, args.big, args.big_queue_type)
        if small.queue_type:
            rows.extend(case_rows(small))
        rows.extend(case_rows(big))
        rows.extend(slopes({(1, small.partitions): small, (1, args.big): big}))
    return rows


def management_for(amqp_url: str, management_url: str | None) -> Management:
    """The management API (lists of thousands of queues take seconds: a long timeout)."""
    return Management.for_amqp(amqp_url, management_url, timeout=MANAGEMENT_TIMEOUT)


async def management_answers(management: Management) -> bool:
    try:
        return "node" in _as_dict(await management.overview())
    except ManagementError:
        return False


def _as_dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


async def run(args: Options) -> tuple[list[Row], list[str]]:
    tag = f"grow{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="roger-growth-") as tmp:
        rabbit: RabbitServer | None = None
        etcd_server = EtcdServer(Path(tmp, "etcd"))
        try:
            amqp_url, management = args.amqp_url, management_for(args.amqp_url, args.management_url)
            if args.private_rabbitmq or not await management_answers(management):
                await management.close()
                say("starting a private RabbitMQ with the management plugin (the given one has no API)")
                rabbit = RabbitServer(Path(tmp, "rabbitmq"))
                await asyncio.to_thread(rabbit.start)
                amqp_url = rabbit.endpoint.amqp_url
                management = Management(rabbit.endpoint.management_url, timeout=MANAGEMENT_TIMEOUT)
            await asyncio.to_thread(etcd_server.start)
            etcd = Etcd(EtcdConfig.from_string(etcd_server.endpoint.endpoints, tag))
            await etcd.connect()
            amqp = await bounded("connecting to RabbitMQ", aio_pika.connect(amqp_url), 15)
            broker = Broker(AmqpConfig(url=amqp_url, queue_type=args.queue_type))
            await broker.connect()
            bench = Bench(args, tag, Path(tmp), etcd_server, etcd, amqp_url, management, amqp, broker)
            try:
                rows = await run_cases(bench)
                header = await machine(bench)
            finally:
                for factory in bench.factories:
                    factory.cleanup()
                await bench.delete_queues()
                await broker.close()
                await amqp.close()
                await etcd.close()
                await management.close()
            return rows, header
        finally:
            etcd_server.cleanup()
            if rabbit is not None:
                await asyncio.to_thread(rabbit.cleanup)


async def machine(bench: Bench) -> list[str]:
    overview = _as_dict(await bench.management.overview())
    cpuinfo = await asyncio.to_thread(lambda: Path("/proc/cpuinfo").read_text().splitlines())
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return [
        f"machine: nproc {os.cpu_count()}, {models[0] if models else 'unknown CPU'}",
        f"RabbitMQ {overview.get('rabbitmq_version', '?')}, {bench.args.queue_type} queues;"
        f" Python {sys.version.split()[0]}",
    ]


def table(rows: list[Row], header: list[str], load: tuple[float, float, float]) -> str:
    lines = [*header, f"load average before the run: {' '.join(f'{x:.2f}' for x in load)}", ""]
    lines += ["| figure | value | unit |", "|---|---:|---|"]
    lines += [f"| {r.figure} | {r.value:,.2f} | {r.unit} |" for r in rows]
    return "\n".join(lines)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(description="roger_cluster growth benchmark (see the module docstring)")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--management-url", help="default: port 15672 on the AMQP host")
    p.add_argument("--private-rabbitmq", action="store_true", help="always start a private broker")
    p.add_argument("--queue-type", choices=("quorum", "classic"), default="quorum")
    p.add_argument("--sizes", type=_ints, help="partition counts (default 10,100,1000; quick 10,50)")
    p.add_argument("--clusters", type=_ints, help="node counts for --sizes (default 1,3; quick 1,2)")
    p.add_argument(
        "--nodes", type=_ints, help="node counts at --scale-partitions (default 1,2,4,8; quick 1,2)"
    )
    p.add_argument("--scale-partitions", type=int, help="partitions for --nodes (default 100; quick 20)")
    p.add_argument(
        "--big", type=int, help="partitions on 1 node, a case of its own (default 2500; quick none; 0: none)"
    )
    p.add_argument(
        "--big-queue-type",
        choices=("quorum", "classic"),
        default="classic",
        help="queues of the --big case (classic: RabbitMQ 3.10 on 2 vCPUs stops taking connections"
        " under 10,000 quorum queues; see docs/scale.md)",
    )
    p.add_argument("--one-more", type=int, default=5, help="one-more-partition starts timed per case")
    p.add_argument("--quick", action="store_true", help="a small run (about 1.5 minutes)")
    p.add_argument("--json", action="store_true", help="print JSON rows on stdout; progress on stderr")
    a = p.parse_args(argv)
    quick = a.quick
    return Options(
        amqp_url=a.amqp_url,
        management_url=a.management_url,
        private_rabbitmq=a.private_rabbitmq,
        queue_type=a.queue_type,
        big_queue_type=a.big_queue_type,
        sizes=a.sizes or ((10, 50) if quick else (10, 100, 1000)),
        clusters=a.clusters or ((1, 2) if quick else (1, 3)),
        nodes=a.nodes or ((1, 2) if quick else (1, 2, 4, 8)),
        scale_partitions=a.scale_partitions or (20 if quick else 100),
        big=(0 if quick else 2500) if a.big is None else a.big,
        one_more=min(a.one_more, 3) if quick else a.one_more,
        json=a.json,
    )


def main() -> int:
    args = parse_args()
    load = os.getloadavg()
    rows, header = asyncio.run(run(args))
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=1))
    else:
        print(table(rows, header, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
