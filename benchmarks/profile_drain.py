"""Where a draining node spends its time: py-spy samples one `roger-node` draining no-op jobs.

    .venv/bin/python benchmarks/profile_drain.py [--jobs 20000] [--prefetch 100] [--sync] [--out DIR]

A private etcd in a temp dir; the broker at --amqp-url (the queue made is deleted after). The
backlog is enqueued first, a node started and `py-spy record` attached to it (raw collapsed stacks,
idle frames excluded) while it is given the partition and drains it. The report sums the samples
by layer (our code, aio-pika/aiormq, pamqp, msgpack, gRPC, the event loop itself) and lists the
functions with the most self time. Samples whose innermost frame is `Thread.run` are left out:
they are gRPC's completion-queue thread inside C code, which py-spy counts as busy while /proc shows
it asleep (0.01 s of CPU in a 20,000-job drain); so are samples whose innermost frame is
`JobThreads._work` (an idle sync-job thread waiting for a call, with `--sync`). Needs py-spy
(`pip install py-spy`) and ptrace rights.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aio_pika

from roger_cluster import Client
from roger_cluster.broker import Broker
from roger_cluster.cluster.partitions import PartitionSpec, put_partition
from roger_cluster.delays import LEVELS
from roger_cluster.demo import Noop, NoopSync
from roger_cluster.names import (
    buried_queue_name,
    delay_exchange_name,
    delay_queue_name,
    due_queue_name,
    history_stream_name,
    queue_name,
    release_queue_name,
    undeliverable_queue_name,
)
from roger_cluster.testing.nodes import NodeFactory
from roger_cluster.testing.servers import EtcdServer
from roger_cluster.testing.wait import eventually

QUEUE = "default"
LAYERS = (  # first match wins, checked against the frame's file path
    ("roger_cluster", "(roger_cluster/"),
    ("aio-pika", "(aio_pika/"),
    ("aiormq", "(aiormq/"),
    ("pamqp", "(pamqp/"),
    ("msgpack", "msgpack"),
    ("grpc", "grpc"),
    ("asyncio", "(asyncio/"),
    ("threads", "(threading.py"),
    ("imports", "(<frozen importlib"),
)


def layer(frame: str) -> str:
    for name, marker in LAYERS:
        if marker in frame:
            return name
    return "other"


def report(raw: Path, top: int) -> str:
    """Self samples by layer and by function, from py-spy's collapsed stacks."""
    by_layer: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = native = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        leaf = re.sub(r":\d+\)$", ")", frames[-1])  # a function, not one of its lines
        if leaf.startswith(("Thread.run (", "JobThreads._work (")):
            native += count  # a thread inside C code (an idle job thread waits for a call)
            continue
        total += count
        by_layer[layer(leaf)] += count
        by_function[leaf] += count
        for name in {layer(f) for f in frames}:
            inclusive[name] += count
    lines = [
        f"{total} samples of Python code ({native} more in native threads, left out)",
        "",
        "layer          self%  incl%",
    ]
    for name, count in by_layer.most_common():
        lines.append(f"{name:<14} {100 * count / total:5.1f}  {100 * inclusive[name] / total:5.1f}")
    lines += ["", f"top {top} functions by self time"]
    for function, count in by_function.most_common(top):
        lines.append(f"{100 * count / total:5.1f}%  {function}")
    return "\n".join(lines)


async def profile(args: argparse.Namespace, out: Path) -> Path:
    tag = f"prof{secrets.token_hex(3)}"
    raw = out / "drain.collapsed"
    with tempfile.TemporaryDirectory(prefix="roger-profile-") as tmp:
        etcd = EtcdServer(Path(tmp, "etcd"))
        etcd.start()
        client = Client(args.amqp_url, etcd.endpoint.endpoints, tag)
        factory = NodeFactory(args.amqp_url, etcd.endpoint.endpoints, tag, Path(tmp))
        try:
            broker = await client.broker()
            await broker.declare(tag, QUEUE)
            job_class = NoopSync if args.sync else Noop
            await client.enqueue_many((job_class() for _ in range(args.jobs)), tag, QUEUE)
            node = await factory.start("profiled")
            spy = [args.py_spy, "record", "--format", "raw", "--rate", str(args.rate), "-o", str(raw)]
            process = subprocess.Popen([*spy, "--pid", str(node.pid)], stdout=subprocess.DEVNULL)  # noqa: ASYNC220
            try:
                name = queue_name(tag, QUEUE)

                async def empty() -> bool:
                    stats = await broker.stats(name)
                    return stats is not None and stats.ready == 0

                await asyncio.sleep(1.0)  # py-spy attaches; nothing to wait for that it would report
                started = time.monotonic()
                await put_partition(await client.etcd(), tag, PartitionSpec(tag, {QUEUE: args.prefetch}))
                await eventually(empty, 600, interval=0.05, message="(backlog drained)")
                print(f"drained {args.jobs} jobs in {time.monotonic() - started:.2f}s under py-spy")
            finally:
                process.send_signal(signal.SIGINT)  # py-spy writes its file and exits
                process.wait(60)
                await client.stop_partition(tag)
        finally:
            factory.cleanup()
            await drop_queues(await client.broker(), tag)  # even when the node did not start
            await drop_delay_levels(args.amqp_url, tag)
            await client.close()
            etcd.cleanup()
    return raw


async def drop_queues(broker: Broker, partition: str) -> None:
    names = (queue_name(partition, QUEUE), buried_queue_name(partition, QUEUE), release_queue_name(partition))
    for name in names:
        await broker.delete_queue(name)


async def drop_delay_levels(amqp_url: str, namespace: str) -> None:
    """The delay levels, due queues and history stream the node declared for its namespace."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for name in (
            due_queue_name(namespace),
            undeliverable_queue_name(namespace),
            history_stream_name(namespace),
        ):
            await channel.queue_delete(name)
        for level in range(LEVELS):
            await channel.queue_delete(delay_queue_name(namespace, level))
            await channel.exchange_delete(delay_exchange_name(namespace, level))
    finally:
        await connection.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--prefetch", type=int, default=100)
    p.add_argument("--rate", type=int, default=250, help="samples per second (default %(default)s)")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--out", type=Path, default=Path("profile-out"))
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--sync", action="store_true", help="plain `def` no-op jobs (worker threads)")
    p.add_argument(
        "--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    raw = asyncio.run(profile(args, args.out))
    print(report(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
