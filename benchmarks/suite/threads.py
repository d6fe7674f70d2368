"""Section 3, SyncClient: enqueueing from threads, as a WSGI app does, against `enqueue_many`.

`SyncClient.enqueue` called from `THREADS` threads at once (a pool, each thread enqueueing one job
at a time and waiting for its confirm), beside `Client.enqueue_many` of as many jobs on the same
queue type, in alternating rounds (which side goes first rotates), medians. Both sides build their
jobs beforehand and encode them inside the measurement; CPU per job is this whole process's (the
SyncClient's loop thread included). The issue's target: SyncClient >= 0.8x enqueue_many, which
holds only if calls from the threads are in flight together on the one connection.

Two more sides show what bounds the threads: `Client.enqueue` from as many asyncio tasks (the async
client with the same number of confirms in flight), and bare aio-pika publishing the same bodies
with the same number in flight (the transport itself, none of our code). With 8 confirms in
flight a round trip to a quorum queue is the bound, whoever waits for it.
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor

import aio_pika

from roger_cluster import Client, SyncClient
from roger_cluster.broker.messages import amqp_properties
from roger_cluster.codec import JobMessage, encode
from roger_cluster.names import queue_name

from .figures import OURS, Work, at_least, median, rate
from .jobs import Count
from .report import Row
from .rig import Measure, bounded, log, timed

THREADS = 8
TARGET = 0.8
SIDES = ("sync", "many", "tasks", "bare")


def from_threads(roger: SyncClient, partition: str, jobs: list[Count]) -> Measure:
    """Enqueue `jobs` to `partition` through `roger` from THREADS threads: rate, CPU per job."""
    with ThreadPoolExecutor(THREADS) as pool:
        started, cpu = time.perf_counter(), time.process_time()
        for _ in pool.map(lambda job: roger.enqueue(job, partition), jobs):
            pass
        elapsed = time.perf_counter() - started
    return Measure(len(jobs) / elapsed, (time.process_time() - cpu) / len(jobs) * 1e6)


async def from_tasks(client: Client, partition: str, jobs: list[Count]) -> None:
    """Enqueue `jobs` through the async client from THREADS tasks, one job at a time each."""
    pending = iter(jobs)

    async def task() -> None:
        for job in pending:
            await client.enqueue(job, partition)

    await asyncio.gather(*(task() for _ in range(THREADS)))


async def bare(url: str, partition: str, jobs: list[Count]) -> None:
    """Publish the jobs' messages with bare aio-pika, THREADS confirms in flight, mandatory."""
    connection = await aio_pika.connect(url)
    try:
        channel = await (await connection.channel(publisher_confirms=True)).get_underlay_channel()
        pending = iter(jobs)

        async def task() -> None:
            for job in pending:
                message = JobMessage.from_job(job, None)
                await channel.basic_publish(
                    encode(message),
                    routing_key=queue_name(partition, message.queue),
                    properties=amqp_properties(message, partition),
                    mandatory=True,
                )

        await asyncio.gather(*(task() for _ in range(THREADS)))
    finally:
        await connection.close()


async def rows(work: Work) -> list[Row]:
    rig, queue_type, n = work.rig, work.options.queue_type, work.options.jobs
    client = rig.clients[queue_type]
    samples: dict[str, list[Measure]] = {side: [] for side in SIDES}
    roger = SyncClient(amqp_config=client.amqp_config, etcd_config=client.etcd_config)
    try:
        for number in range(work.options.rounds):
            turn = number % len(SIDES)
            for side in SIDES[turn:] + SIDES[:turn]:
                partition = await rig.partition(f"t{side[0]}{number}", queue_type)
                jobs = [Count(i) for i in range(n)]
                if side == "sync":
                    measured = await bounded(
                        "SyncClient", asyncio.to_thread(from_threads, roger, partition, jobs)
                    )
                elif side == "many":
                    measured = await timed(n, functools.partial(client.enqueue_many, jobs, partition))
                elif side == "tasks":
                    measured = await timed(n, functools.partial(from_tasks, client, partition, jobs))
                else:
                    url = work.options.amqp_url
                    measured = await timed(n, functools.partial(bare, url, partition, jobs))
                if (ready := await rig.ready(partition)) != n:
                    rig.miscounts.append(f"SyncClient phase, {side}: {ready} jobs queued of {n}")
                await rig.drop(partition)
                samples[side].append(measured)
                log(f"   round {number + 1}: {side} {measured.rate:,.0f}/s")
    finally:
        await asyncio.to_thread(roger.close)
    sync, many, tasks, raw = (median(samples[side]) for side in SIDES)
    return [
        rate(OURS, f"SyncClient.enqueue from {THREADS} threads, confirms ({queue_type})", sync),
        rate(OURS, f"  beside enqueue_many, window 1000 ({queue_type})", many),
        at_least("  / enqueue_many", sync.rate, many.rate, TARGET),
        rate(OURS, f"  beside Client.enqueue from {THREADS} tasks ({queue_type})", tasks),
        rate(OURS, f"  beside bare aio-pika, {THREADS} in flight ({queue_type})", raw),
        at_least(f"  / Client.enqueue from {THREADS} tasks", sync.rate, tasks.rate, TARGET),
    ]
