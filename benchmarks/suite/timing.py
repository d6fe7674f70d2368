"""Section 3, timings: end-to-end latency, partition start, and a killed node's job moving.

- Latency: one `Stamp` job at a time at a light, steady pace (one enqueue every `interval`), on
  the nodes of the matrix. Each job records its `enqueued_at` (taken by the client just before it
  publishes) and the time `perform` began; the benchmark only sleeps meanwhile, so it does not
  compete for the CPU it measures.
- Partition start: from just before the etcd put of a new partition (its queues declared first,
  not counted) to each node's logged consume-ok time: one sample per node and start.
- Failover: a `Hold` job starts on some node; that node gets SIGKILL; the sample runs from just
  before the kill to the job's start recorded on another node. A fresh node then replaces the
  killed one, so every sample sees the same number of nodes.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass

from roger_cluster.cluster.partitions import PartitionSpec, put_partition
from roger_cluster.names import queue_name
from roger_cluster.testing.nodes import NodeProcess

from .jobs import Hold, Stamp, Start, read_stamps
from .rig import POLL_INTERVAL, QUEUE, Rig, bounded

CONSUME_OK = re.compile(r"consuming (\S+) with prefetch \d+ \(consume-ok at ([0-9.]+)\)")
CONCURRENCY = 10
HOLD = 600.0  # seconds a Hold job keeps its slot: longer than the run


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True)
class Cluster:
    """The nodes the timings run on, all of the main queue type and carrying `label`."""

    queue_type: str
    label: str
    nodes: list[NodeProcess]


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


async def start(rig: Rig, cluster: Cluster, suffix: str) -> str:
    """A new partition running on every node of the cluster, consumers attached."""
    partition = await rig.partition(suffix, cluster.queue_type)
    started = time.time()
    await rig.clients[cluster.queue_type].start_partition(
        partition, {QUEUE: CONCURRENCY}, labels=(cluster.label,)
    )
    await bounded(
        "partition start", wait_consume_ok(cluster.nodes, queue_name(partition, QUEUE), started), 30
    )
    return partition


async def wait_stamps(rig: Rig, partition: str, done: int, nodes: list[NodeProcess]) -> list[Start]:
    """The stamps of `partition` once there are `done` of them."""
    while len(stamps := read_stamps(rig.stamps(partition))) < done:
        if dead := [n for n in nodes if n.returncode is not None]:
            raise RuntimeError(f"node {dead[0].name} exited:\n{dead[0].log()[-2000:]}")
        await asyncio.sleep(POLL_INTERVAL)
    return stamps


async def latency(rig: Rig, cluster: Cluster) -> list[float]:
    """Seconds from enqueue to `perform` starting, for `samples` jobs sent one at a time."""
    partition = await start(rig, cluster, "latency")
    client = rig.clients[cluster.queue_type]
    count = rig.options.samples
    for i in range(count):
        await client.enqueue(Stamp(i), partition)
        await asyncio.sleep(rig.options.interval)
    stamps = await bounded("latency jobs", wait_stamps(rig, partition, count, cluster.nodes), 60)
    if sorted(s.index for s in stamps) != list(range(count)):
        rig.miscounts.append(f"latency: {len(stamps)} starts recorded for {count} jobs")
    await client.stop_partition(partition)
    return [s.started - s.enqueued for s in stamps]


async def partition_starts(rig: Rig, cluster: Cluster) -> tuple[list[float], list[float]]:
    """Seconds from just before the etcd put to each node's consume-ok, for every start;
    and how long each put itself took (etcd's commit, part of the former)."""
    client = rig.clients[cluster.queue_type]
    etcd = await client.etcd()
    samples: list[float] = []
    puts: list[float] = []
    for i in range(rig.options.starts):
        partition = await rig.partition(f"s{i}", cluster.queue_type)
        spec = PartitionSpec(partition, {QUEUE: CONCURRENCY}, labels=(cluster.label,))
        written = time.time()
        await put_partition(etcd, client.namespace, spec)
        puts.append(time.time() - written)
        consumed = wait_consume_ok(cluster.nodes, queue_name(partition, QUEUE), written)
        samples.extend(t - written for t in await bounded("partition start", consumed, 10))
        await client.stop_partition(partition)
        await asyncio.sleep(0.1)  # let the nodes close the stopped consumer: independent samples
        await rig.drop(partition)
    return samples, puts


async def failover(rig: Rig, cluster: Cluster, labels: list[str]) -> list[float]:
    """Seconds from SIGKILL of the node running a job to that job starting on another node."""
    partition = await start(rig, cluster, "failover")
    client = rig.clients[cluster.queue_type]
    samples: list[float] = []
    for i in range(rig.options.kills):
        await client.enqueue(Hold([i, HOLD]), partition)
        first = await bounded("held job start", _started(rig, partition, i, None, cluster.nodes), 30)
        victim = next(n for n in cluster.nodes if n.name == first.node)
        killed = time.time()
        victim.kill()
        survivors = [n for n in cluster.nodes if n is not victim]
        again = await bounded("restart elsewhere", _started(rig, partition, i, first.node, survivors), 60)
        samples.append(again.started - killed)
        fresh = await rig.start_node(f"{victim.name}r", cluster.queue_type, labels)
        cluster.nodes[cluster.nodes.index(victim)] = fresh
        await bounded("new node", wait_consume_ok([fresh], queue_name(partition, QUEUE), killed), 30)
    return samples


async def _started(
    rig: Rig, partition: str, index: int, not_on: str | None, nodes: list[NodeProcess]
) -> Start:
    """The first start of job `index` on a node other than `not_on`."""
    while True:
        for stamp in read_stamps(rig.stamps(partition)):
            if stamp.index == index and stamp.node != not_on:
                return stamp
        if dead := [n for n in nodes if n.returncode is not None]:
            raise RuntimeError(f"node {dead[0].name} exited:\n{dead[0].log()[-2000:]}")
        await asyncio.sleep(POLL_INTERVAL)
