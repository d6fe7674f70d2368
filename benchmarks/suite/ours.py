"""Section 3, throughput: roger_cluster's enqueue and drain rates.

- Enqueue: `Client.enqueue_many` of N jobs (building and encoding them is counted), publisher
  confirms on, `ENQUEUE_WINDOW` in flight; and `await client.enqueue(job)` one at a time.
- Drain: a backlog of N jobs, then the partition is started on 1, 2 or 3 nodes (node labels pick
  which: node k carries the labels `n<k>`..`n3`, so a partition limited to label `n<k>` runs on the
  first k nodes) at a concurrency (= prefetch per node), with async or plain-`def` no-op jobs.
  Every job records its execution in the partition's tally file; the rate is (executions - 1) /
  (last - first), and after SETTLE every job must have run exactly once, with nothing left in the
  queue or its buried queue. CPU per job is the consuming nodes' user + system time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from roger_cluster.job import Job
from roger_cluster.testing.nodes import NodeProcess

from .jobs import Count, CountSync
from .rig import QUEUE, SETTLE, Measure, Rig, dead_nodes, process_cpu, timed


@dataclass(frozen=True)
class Placement:
    """Which nodes a drain runs on: those carrying `label`."""

    label: str
    nodes: list[NodeProcess]


def labels(position: int, last: int) -> list[str]:
    """The labels of the node at `position` (1-based) of `last`: `n<position>` .. `n<last>`."""
    return [f"n{k}" for k in range(position, last + 1)]


async def enqueue_many(rig: Rig, partition: str, queue_type: str, sync: bool = False) -> Measure:
    job_class: type[Job] = CountSync if sync else Count
    jobs = [job_class(i) for i in range(rig.options.jobs)]
    client = rig.clients[queue_type]
    return await timed(len(jobs), lambda: client.enqueue_many(jobs, partition))


async def enqueue_each(rig: Rig, partition: str, queue_type: str, count: int) -> Measure:
    client = rig.clients[queue_type]

    async def each() -> None:
        for i in range(count):
            await client.enqueue(Count(i), partition)

    return await timed(count, each)


async def drain(rig: Rig, partition: str, queue_type: str, where: Placement, concurrency: int) -> Measure:
    """Start the filled partition on the placement's nodes; time them draining it."""
    client = rig.clients[queue_type]
    if (ready := await rig.ready(partition)) != rig.options.jobs:
        raise RuntimeError(f"{partition}: {ready} jobs ready, not {rig.options.jobs}")
    cpu = sum(process_cpu(n.pid) for n in where.nodes)
    await client.start_partition(partition, {QUEUE: concurrency}, labels=(where.label,))
    await rig.wait_count(partition, dead_nodes(where.nodes))
    cpu = sum(process_cpu(n.pid) for n in where.nodes) - cpu
    await asyncio.sleep(SETTLE)
    await client.stop_partition(partition)
    left = await rig.ready(partition) + await rig.ready(partition, buried=True)
    what = f"{len(where.nodes)} node(s), concurrency {concurrency}, {partition}"
    return Measure(rig.counted(what, partition, left), cpu / rig.options.jobs * 1e6)


async def filled_drain(
    rig: Rig, suffix: str, queue_type: str, where: Placement, concurrency: int, sync: bool
) -> tuple[Measure, Measure]:
    """Fill a new partition, drain it, drop it: (enqueue, drain)."""
    partition = await rig.partition(suffix, queue_type)
    enqueued = await enqueue_many(rig, partition, queue_type, sync)
    drained = await drain(rig, partition, queue_type, where, concurrency)
    await rig.drop(partition)
    return enqueued, drained
