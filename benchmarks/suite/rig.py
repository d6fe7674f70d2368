"""What every section shares: options, the broker and etcd, clients, nodes, records, cleanup.

Invariants: every queue the suite declares is remembered here and deleted at the end, even after
an error; every process it starts (nodes, bare consumers) is killed; every drain is counted in a
tally file, and a drain that did not run every job exactly once, or left a message behind, is
recorded in `miscounts` (the suite then exits 1) instead of becoming a figure that looks fine.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from aio_pika.abc import AbstractChannel, AbstractConnection

from benchmarks.peers import tally
from roger_cluster import Client
from roger_cluster.delays import LEVELS
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
from roger_cluster.testing.nodes import NodeFactory, NodeProcess

from . import jobs

REPO = Path(__file__).resolve().parents[2]
QUEUE = "default"
QUEUE_TYPES = ("classic", "quorum")
POLL_INTERVAL = 0.010
SETTLE = 0.5  # after the last expected execution: time for a stray duplicate to show, acks to land
PHASE_TIMEOUT = 600.0
RUN_ENV = "ROGER_BENCH_RUN"  # every process the suite starts carries it (the smoke test looks)

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """The command line, typed."""

    jobs: int
    rounds: int
    quick: bool
    queue_type: str  # of the node matrix and the timings
    amqp_url: str
    etcd: str  # "" = a private etcd
    prefetch: int  # the headline drains' concurrency
    concurrency: tuple[int, ...]
    nodes: tuple[int, ...]
    single: int
    samples: int
    interval: float
    starts: int
    kills: int
    peers: bool
    peer_rounds: int
    peer_cases: tuple[str, ...]
    growth: bool
    output: str  # text, markdown or json


@dataclass(frozen=True)
class Measure:
    """A throughput and the CPU the measured process(es) spent per job."""

    rate: float
    cpu_us: float


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the table (or the JSON)."""
    print(message, file=sys.stderr, flush=True)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bounded(what: str, awaitable: Awaitable[T], timeout: float = PHASE_TIMEOUT) -> T:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise RuntimeError(f"{what} took longer than {timeout:.0f}s") from None


async def timed(count: int, action: Callable[[], Awaitable[object]]) -> Measure:
    """Run `action` in this process: its rate and this process's CPU per job."""
    started, cpu = time.perf_counter(), time.process_time()
    await bounded("publishing", action())
    return Measure(count / (time.perf_counter() - started), (time.process_time() - cpu) / count * 1e6)


def node_env() -> dict[str, str]:
    """What a process of the suite needs to import `benchmarks` from anywhere."""
    path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1"}


def child_env(options: Options) -> dict[str, str]:
    """The environment of the suite's other subprocesses: the servers through the variables
    roger_cluster's tools read, so that a password never shows in a command line."""
    servers = {"ROGER_AMQP_URL": options.amqp_url} | ({"ROGER_ETCD": options.etcd} if options.etcd else {})
    return dict(os.environ) | node_env() | servers


def redact(url: str) -> str:
    """`url` without its password, for output."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Rig:
    """The shared state of one run."""

    options: Options
    tag: str  # the etcd namespace, and the prefix of every partition
    workdir: Path
    amqp: AbstractConnection
    channel: AbstractChannel  # for passive declares
    clients: dict[str, Client]  # by queue type
    factory: NodeFactory
    partitions: list[str] = field(default_factory=list)
    miscounts: list[str] = field(default_factory=list)

    @property
    def records(self) -> Path:
        return self.workdir / "records"

    async def partition(self, suffix: str, queue_type: str) -> str:
        """A new partition name with its queues declared, remembered for cleanup."""
        name = f"{self.tag}_{suffix}"
        self.partitions.append(name)
        await (await self.clients[queue_type].broker()).declare(name, QUEUE)
        return name

    async def ready(self, partition: str, buried: bool = False) -> int:
        name = (buried_queue_name if buried else queue_name)(partition, QUEUE)
        queue = await self.channel.declare_queue(name, passive=True)
        return queue.declaration_result.message_count or 0

    async def drop(self, partition: str) -> None:
        """Delete a partition's queues now, so backlogs do not pile up on the broker. The name
        stays for the final sweep, in case a node still closing its consumer declares it again."""
        await delete_queues(self.amqp, [partition])

    def tally(self, partition: str) -> Path:
        return jobs.tally_path(self.records, partition)

    def stamps(self, partition: str) -> Path:
        return jobs.stamps_path(self.records, partition)

    async def wait_count(self, partition: str, dead: Callable[[], str | None], timeout: float = 0) -> None:
        """Until the tally of `partition` holds `jobs` executions; fails if `dead()` names a
        process that exited."""
        path, count = self.tally(partition), self.options.jobs
        timeout = timeout or max(120.0, count / 100)
        deadline = time.monotonic() + timeout
        while tally.executions(path) < count:
            if reason := dead():
                raise RuntimeError(f"{partition}: {reason} before {count} executions")
            if time.monotonic() > deadline:
                seen = tally.executions(path)
                raise RuntimeError(f"{partition}: {seen} of {count} executions after {timeout:.0f}s")
            await asyncio.sleep(POLL_INTERVAL)

    def counted(self, what: str, partition: str, left: int, distinct: bool = True) -> float:
        """The drain rate from the tally; a wrong count goes to `miscounts`."""
        count = tally.read(self.tally(partition), self.options.jobs)
        exact = count.exact if distinct else count.executions == count.expected
        if not exact or left:
            self.miscounts.append(
                f"{what}: {count.executions} executions ({count.distinct} distinct) of"
                f" {count.expected}, {left} message(s) left"
            )
        return (count.executions - 1) / (count.last - count.first) if count.last > count.first else 0.0

    async def start_node(self, name: str, queue_type: str, labels: Iterable[str], **env: str) -> NodeProcess:
        node = self.factory.spawn(name, ROGER_QUEUE_TYPE=queue_type, ROGER_LABELS=",".join(labels), **env)
        await node.wait_started()
        return node

    async def close(self) -> None:
        """Kill every node, close the clients, delete every queue and the namespace."""
        self.factory.cleanup()  # SIGKILL: queues and keys go below, nothing to hand over
        try:
            etcd = await self.clients[QUEUE_TYPES[0]].etcd()
            await etcd.delete_prefix(self.tag + "/")
        finally:
            for client in self.clients.values():
                await client.close()
            await delete_queues(self.amqp, self.partitions)
            self.partitions.clear()
            channel = await self.amqp.channel()  # key releases, delay levels, the history stream
            try:
                await channel.queue_delete(release_queue_name(self.tag))
                names = (
                    due_queue_name(self.tag),
                    undeliverable_queue_name(self.tag),
                    history_stream_name(self.tag),
                )
                for name in names:
                    await channel.queue_delete(name)
                for level in range(LEVELS):
                    await channel.queue_delete(delay_queue_name(self.tag, level))
                    await channel.exchange_delete(delay_exchange_name(self.tag, level))
            finally:
                await channel.close()


def dead_nodes(nodes: list[NodeProcess]) -> Callable[[], str | None]:
    def dead() -> str | None:
        gone = [n for n in nodes if n.returncode is not None]
        return f"node {gone[0].name} exited:\n{gone[0].log()[-2000:]}" if gone else None

    return dead


async def delete_queues(amqp: AbstractConnection, partitions: list[str]) -> None:
    channel = await amqp.channel()
    try:
        for partition in partitions:
            for name in (queue_name(partition, QUEUE), buried_queue_name(partition, QUEUE)):
                await channel.queue_delete(name)
    finally:
        await channel.close()
