"""Core benchmark: roger_cluster beside bare aio-pika on the same broker, in one run. Not a test.

1. Drain: one `roger-node` subprocess drains N `demo.Noop` jobs with prefetch P; the ceiling is a
   bare aio-pika consumer subprocess (ack only, same prefetch, same bodies and properties, same
   queue type). Each clock starts at the consumer's own consume-ok time and stops when a passive
   declare, polled every 10 ms, first sees 0 ready messages (<= P still unacked, for both).
2. Enqueue with publisher confirms: `Client.enqueue_many` of N Noop jobs (encoding counted) vs
   bare aio-pika publishing of the same pre-encoded bodies with the same properties, mandatory,
   persistent, same window of confirms in flight (asyncio.gather); and one job at a time.
3. Partition start latency: 3 `roger-node` subprocesses; from just before the etcd put of a new
   partition (queues declared before) to each node's logged consume-ok time.

Figures 1-2 run --rounds times, bare and ours alternating which goes first; the table shows
medians. etcd is a private server in a temp dir; every queue made is deleted, every process killed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from roger_cluster import Client
from roger_cluster.broker import amqp_message
from roger_cluster.client import ENQUEUE_WINDOW
from roger_cluster.cluster.partitions import PartitionSpec, put_partition
from roger_cluster.codec import JobMessage, encode
from roger_cluster.demo import Noop
from roger_cluster.names import buried_queue_name, queue_name
from roger_cluster.testing.nodes import NodeFactory, NodeProcess
from roger_cluster.testing.servers import EtcdServer

QUEUE = "default"
POLL_INTERVAL = 0.010
START_CONCURRENCY = 10
CONSUME_OK = re.compile(r"consuming (\S+) with prefetch \d+ \(consume-ok at ([0-9.]+)\)")
BARE_LIFETIME = 900.0  # a bare consumer its parent forgot exits by itself
PHASE_TIMEOUT = 600.0

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """The command line, typed."""

    jobs: int
    queue_type: str
    amqp_url: str
    starts: int
    prefetch: int
    rounds: int
    single: int


@dataclass
class Row:
    """One line of the summary table."""

    figure: str
    ours: float
    bare: float | None = None
    target: str = "info"
    passed: bool | None = None

    @property
    def ratio(self) -> float | None:
        return self.ours / self.bare if self.bare else None


@dataclass
class Bench:
    """What every figure shares: options, connections, nodes, and the queues to delete."""

    args: Options
    tag: str
    client: Client
    amqp: AbstractConnection
    poll: AbstractChannel
    factory: NodeFactory
    partitions: list[str] = field(default_factory=list)

    async def declare(self, suffix: str) -> str:
        """A new partition name with its queues declared, remembered for cleanup."""
        name = f"{self.tag}{suffix}"
        self.partitions.append(name)
        await (await self.client.broker()).declare(name, QUEUE)
        return name

    async def drop(self, partition: str) -> None:
        """Delete a partition's queues now, so backlogs do not pile up on the broker."""
        await delete_queues(self.amqp, [partition])
        self.partitions.remove(partition)


async def bounded(what: str, awaitable: Awaitable[T], timeout: float = PHASE_TIMEOUT) -> T:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise RuntimeError(f"{what} took longer than {timeout:.0f}s") from None


async def ready_count(channel: AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    return queue.declaration_result.message_count or 0


async def wait_empty(channel: AbstractChannel, name: str) -> float:
    """time.time() when a passive declare first reports no ready message."""
    while await ready_count(channel, name):  # noqa: ASYNC110 - polling the broker is the point
        await asyncio.sleep(POLL_INTERVAL)
    return time.time()


@dataclass(frozen=True)
class Measure:
    """A throughput and the CPU the measured process spent per message."""

    rate: float
    cpu_us: float


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(count: int, seconds: float, cpu_seconds: float) -> Measure:
    return Measure(count / seconds, cpu_seconds / count * 1e6)


async def timed(count: int, action: Callable[[], Awaitable[object]]) -> Measure:
    """Run `action` in this process; its rate and this process's CPU per message."""
    started, cpu = time.perf_counter(), time.process_time()
    await bounded("enqueueing", action())
    return measure(count, time.perf_counter() - started, time.process_time() - cpu)


# -- figure 2: enqueue ------------------------------------------------------


async def bare_publish(bench: Bench, partition: str, count: int, window: int) -> Measure:
    """Bare aio-pika: publish what Client.enqueue would, with up to `window` confirms in flight."""
    messages = [JobMessage.from_job(Noop(), QUEUE) for _ in range(count)]
    bodies = [(m, encode(m)) for m in messages]
    routing_key = queue_name(partition, QUEUE)
    channel = await bench.amqp.channel(publisher_confirms=True, on_return_raises=True)
    slots = asyncio.Semaphore(window)

    async def send(message: JobMessage, body: bytes) -> None:
        async with slots:
            amqp = amqp_message(message, body, partition)  # same properties as ours
            await channel.default_exchange.publish(amqp, routing_key=routing_key, mandatory=True)

    try:
        return await timed(count, lambda: asyncio.gather(*(send(*b) for b in bodies)))
    finally:
        await channel.close()


async def enqueue_many(bench: Bench, partition: str) -> Measure:
    jobs = [Noop() for _ in range(bench.args.jobs)]
    return await timed(len(jobs), lambda: bench.client.enqueue_many(jobs, partition))


async def enqueue_each(client: Client, count: int, partition: str) -> None:
    for _ in range(count):
        await client.enqueue(Noop(), partition)


async def one_at_a_time(bench: Bench) -> Row:
    """`await client.enqueue(job)` in a loop vs bare publishing with a window of 1."""
    count = bench.args.single
    partition = await bench.declare("one")
    ours = await timed(count, lambda: enqueue_each(bench.client, count, partition))
    bare = await bare_publish(bench, partition, count, 1)
    await bench.drop(partition)
    return Row(f"enqueue one at a time, {count} jobs (jobs/s)", ours.rate, bare.rate)


# -- figure 1: drain --------------------------------------------------------


async def drain_bare(bench: Bench, partition: str) -> Measure:
    """Drain with a bare aio-pika consumer in its own process."""
    name = queue_name(partition, QUEUE)
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--bare-consumer", name, "--prefetch", str(bench.args.prefetch),
        "--amqp-url", bench.args.amqp_url, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line.startswith(b"consume-ok "):
            raise RuntimeError(f"bare consumer did not start: {line!r}")
        started, cpu = (float(word) for word in line.split()[1:])
        ended = await bounded("bare drain", wait_empty(bench.poll, name))
        return measure(bench.args.jobs, ended - started, process_cpu(process.pid) - cpu)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 10)


async def wait_consume_ok(nodes: list[NodeProcess], rabbit_queue: str, after: float) -> list[float]:
    """Each node's first consume-ok unix time for `rabbit_queue` since `after`, from its log."""
    while True:
        found = [[float(t) for q, t in CONSUME_OK.findall(n.log()) if q == rabbit_queue] for n in nodes]
        times = [next((t for t in ts if t >= after), None) for ts in found]
        if all(t is not None for t in times):
            return [t for t in times if t is not None]
        if dead := [n for n in nodes if n.returncode is not None]:
            raise RuntimeError(f"node {dead[0].name} exited:\n{dead[0].log()[-2000:]}")
        await asyncio.sleep(POLL_INTERVAL)


async def drain_ours(bench: Bench, partition: str, node: NodeProcess) -> Measure:
    """Put the backlog's partition in the map, time the node draining it."""
    name = queue_name(partition, QUEUE)
    spec = PartitionSpec(partition, {QUEUE: bench.args.prefetch})
    written, cpu = time.time(), process_cpu(node.pid)
    await put_partition(await bench.client.etcd(), bench.client.namespace, spec)
    started = (await bounded("node consume-ok", wait_consume_ok([node], name, written), 30))[0]
    ended = await bounded("node drain", wait_empty(bench.poll, name))
    cpu = process_cpu(node.pid) - cpu
    await bench.client.stop_partition(partition)
    if buried := await ready_count(bench.poll, buried_queue_name(partition, QUEUE)):
        raise RuntimeError(f"{buried} Noop jobs were buried: the drain figure is not valid")
    return measure(bench.args.jobs, ended - started, cpu)


async def drain_and_enqueue_round(bench: Bench, node: NodeProcess, number: int) -> dict[str, Measure]:
    """One round of figures 1 and 2: fill a new queue and drain it, bare and ours, alternating."""
    result: dict[str, Measure] = {}
    for side in ("ours", "bare") if number % 2 else ("bare", "ours"):
        partition = await bench.declare(f"{side}{number}")
        if side == "ours":
            result["enqueue ours"] = await enqueue_many(bench, partition)
            result["drain ours"] = await drain_ours(bench, partition, node)
        else:
            result["enqueue bare"] = await bare_publish(bench, partition, bench.args.jobs, ENQUEUE_WINDOW)
            result["drain bare"] = await drain_bare(bench, partition)
        await bench.drop(partition)
    return result


# -- figure 3: partition start latency --------------------------------------


async def start_latency(bench: Bench, nodes: list[NodeProcess]) -> tuple[list[float], list[float]]:
    """Seconds from just before the etcd put to each node's consume-ok, for every start;
    and how long each put itself took (etcd's commit, part of the former)."""
    etcd = await bench.client.etcd()
    samples: list[float] = []
    puts: list[float] = []
    for i in range(bench.args.starts):
        partition = await bench.declare(f"s{i}")
        spec = PartitionSpec(partition, {QUEUE: START_CONCURRENCY})
        written = time.time()
        await put_partition(etcd, bench.client.namespace, spec)
        puts.append(time.time() - written)
        consumed = wait_consume_ok(nodes, queue_name(partition, QUEUE), written)
        times = await bounded("partition start", consumed, 10)
        samples.extend(t - written for t in times)
        await bench.client.stop_partition(partition)
        await asyncio.sleep(0.1)  # let the nodes drain the stopped consumer: independent samples
    return samples, puts


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# -- orchestration ----------------------------------------------------------


def round_rows(rounds: list[dict[str, Measure]], args: Options) -> list[Row]:
    """Median rate (the target) and median CPU per job (the explanation) of figures 1 and 2."""

    def median(key: str, cpu: bool = False) -> float:
        return statistics.median(r[key].cpu_us if cpu else r[key].rate for r in rounds)

    drain = f"drain, 1 node, prefetch {args.prefetch}"
    enqueue = f"enqueue_many, window {ENQUEUE_WINDOW}"
    rows = [
        Row(f"{drain} (jobs/s)", median("drain ours"), median("drain bare"), ">= 0.8x"),
        Row(f"{enqueue} (jobs/s)", median("enqueue ours"), median("enqueue bare"), ">= 0.8x"),
        Row(f"{drain}: consumer CPU (us/job)", median("drain ours", True), median("drain bare", True)),
        Row(f"{enqueue}: client CPU (us/job)", median("enqueue ours", True), median("enqueue bare", True)),
    ]
    for row in rows[:2]:
        row.passed = (row.ratio or 0) >= 0.8
    return rows


async def run_figures(bench: Bench) -> list[Row]:
    args = bench.args
    print(f"enqueue one at a time: {args.single} jobs, ours then bare", flush=True)
    single = await one_at_a_time(bench)
    node = await bench.factory.start()
    rounds: list[dict[str, Measure]] = []
    for i in range(args.rounds):
        rounds.append(await drain_and_enqueue_round(bench, node, i))
        line = ", ".join(f"{k} {m.rate:,.0f}/s ({m.cpu_us:.0f} us/job)" for k, m in rounds[-1].items())
        print(f"round {i + 1}: {line}", flush=True)
    print(f"partition start latency: 3 nodes, {args.starts} starts", flush=True)
    nodes = [node, *await bench.factory.start_many(2)]
    seconds, puts = await start_latency(bench, nodes)
    samples = [s * 1000 for s in seconds]
    p99 = percentile(samples, 0.99)
    return [
        *round_rows(rounds, args),
        single,
        Row(f"start latency p50, {len(samples)} samples (ms)", percentile(samples, 0.5)),
        Row("start latency p90 (ms)", percentile(samples, 0.9)),
        Row("start latency p99 (ms)", p99, target="< 100 ms", passed=p99 < 100),
        Row("start latency max (ms)", max(samples)),
        Row("  of which the etcd put, p50 (ms)", statistics.median(puts) * 1000),
    ]


async def delete_queues(amqp: AbstractConnection, partitions: list[str]) -> None:
    channel = await amqp.channel()
    for partition in partitions:
        for name in (queue_name(partition, QUEUE), buried_queue_name(partition, QUEUE)):
            await channel.queue_delete(name)
    await channel.close()


async def run(args: Options) -> tuple[str, list[Row]]:
    """Start etcd, run every figure, clean up; returns the RabbitMQ version and the rows."""
    tag = f"bench{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="roger-bench-") as tmp:
        etcd = EtcdServer(Path(tmp, "etcd"))
        try:
            etcd.start()
            amqp = await asyncio.wait_for(aio_pika.connect(args.amqp_url), 10)
            client = Client(args.amqp_url, etcd.endpoint.endpoints, tag, queue_type=args.queue_type)
            env = {"ROGER_QUEUE_TYPE": args.queue_type, "ROGER_LOG_LEVEL": "info"}
            factory = NodeFactory(args.amqp_url, etcd.endpoint.endpoints, tag, Path(tmp), extra_env=env)
            bench = Bench(args, tag, client, amqp, await amqp.channel(), factory)
            try:
                return rabbitmq_version(amqp), await run_figures(bench)
            finally:
                factory.cleanup()  # SIGKILL: the queues and etcd go too, nothing to hand over
                await client.close()
                await delete_queues(amqp, bench.partitions)
                await amqp.close()
        finally:
            etcd.cleanup()


# -- output and entry points ------------------------------------------------


def rabbitmq_version(connection: AbstractConnection) -> str:
    properties = connection.transport.connection.server_properties if connection.transport else {}
    version = properties.get("version", "unknown")
    return version.decode() if isinstance(version, bytes) else str(version)


def machine(rabbitmq: str, load: tuple[float, float, float]) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return [
        f"machine: nproc {os.cpu_count()}, {models[0] if models else 'unknown CPU'}",
        f"load average before the run (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load)}",
        f"RabbitMQ {rabbitmq}, Python {sys.version.split()[0]}, aio-pika {aio_pika.__version__}",
    ]


def table(rows: list[Row], args: Options, header: list[str]) -> str:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    lines = [
        *header,
        f"{args.queue_type} queues, {args.jobs} jobs x {args.rounds} rounds (median), prefetch"
        f" {args.prefetch}, {args.starts} partition starts x 3 nodes",
        "",
        "| figure | ours | bare | ratio | target | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        result = "-" if r.passed is None else ("PASS" if r.passed else "FAIL")
        lines.append(f"| {r.figure} | {num(r.ours)} | {num(r.bare)} | {ratio} | {r.target} | {result} |")
    return "\n".join(lines)


async def bare_consumer(url: str, queue: str, prefetch: int) -> None:
    """The drain ceiling: ack every delivery, nothing else. Prints its consume-ok time."""
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    rabbit_queue = await channel.get_queue(queue, ensure=False)

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()

    await rabbit_queue.consume(on_message)
    print(f"consume-ok {time.time():.6f} {time.process_time():.3f}", flush=True)
    await asyncio.sleep(BARE_LIFETIME)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="roger_cluster core benchmark (see the module docstring)")
    p.add_argument("--jobs", type=int, default=20_000, help="backlog / batch size (default %(default)s)")
    p.add_argument("--queue-type", choices=("quorum", "classic"), default="quorum")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--starts", type=int, default=30, help="partition starts timed (default %(default)s)")
    p.add_argument("--prefetch", type=int, default=100, help="drain concurrency (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of figures 1-2 (default %(default)s)")
    p.add_argument("--single", type=int, default=2000, help="jobs enqueued one at a time")
    p.add_argument("--bare-consumer", metavar="QUEUE", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> int:
    parsed = parse_args()
    if parsed.bare_consumer:
        asyncio.run(bare_consumer(parsed.amqp_url, parsed.bare_consumer, parsed.prefetch))
        return 0
    del parsed.bare_consumer
    args = Options(**vars(parsed))
    load = os.getloadavg()  # other work on the machine skews every figure
    version, rows = asyncio.run(run(args))
    print()
    print(table(rows, args, machine(version, load)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
