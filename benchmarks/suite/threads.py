"""Section 3, SyncClient: enqueueing from threads, as a WSGI app does, against `enqueue_many`.

`SyncClient.enqueue` called from `THREADS` threads at once (a pool, each thread enqueueing one job
at a time and waiting for its confirm), beside `Client.enqueue_many` of as many jobs on the same
queue type, in alternating rounds (which goes first rotates), medians. Both sides build their jobs
beforehand and encode them inside the measurement; CPU per job is this whole process's (the
SyncClient's loop thread included). The issue's target: SyncClient >= 0.8x enqueue_many, which
holds only if calls from the threads are in flight together on the one connection.
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor

from roger_cluster import SyncClient

from .figures import OURS, Work, at_least, median, rate
from .jobs import Count
from .report import Row
from .rig import Measure, bounded, log, timed

THREADS = 8
TARGET = 0.8


def from_threads(roger: SyncClient, partition: str, jobs: list[Count]) -> Measure:
    """Enqueue `jobs` to `partition` through `roger` from THREADS threads: rate, CPU per job."""
    with ThreadPoolExecutor(THREADS) as pool:
        started, cpu = time.perf_counter(), time.process_time()
        for _ in pool.map(lambda job: roger.enqueue(job, partition), jobs):
            pass
        elapsed = time.perf_counter() - started
    return Measure(len(jobs) / elapsed, (time.process_time() - cpu) / len(jobs) * 1e6)


async def rows(work: Work) -> list[Row]:
    rig, queue_type, n = work.rig, work.options.queue_type, work.options.jobs
    client = rig.clients[queue_type]
    samples: dict[str, list[Measure]] = {"sync": [], "many": []}
    roger = SyncClient(amqp_config=client.amqp_config, etcd_config=client.etcd_config)
    try:
        for number in range(work.options.rounds):
            for side in ("sync", "many") if number % 2 == 0 else ("many", "sync"):
                partition = await rig.partition(f"t{side[0]}{number}", queue_type)
                jobs = [Count(i) for i in range(n)]
                if side == "sync":
                    measured = await bounded(
                        "SyncClient", asyncio.to_thread(from_threads, roger, partition, jobs)
                    )
                else:
                    measured = await timed(n, functools.partial(client.enqueue_many, jobs, partition))
                if (ready := await rig.ready(partition)) != n:
                    rig.miscounts.append(f"SyncClient phase, {side}: {ready} jobs queued of {n}")
                await rig.drop(partition)
                samples[side].append(measured)
                log(f"   round {number + 1}: {side} {measured.rate:,.0f}/s")
    finally:
        await asyncio.to_thread(roger.close)
    sync, many = median(samples["sync"]), median(samples["many"])
    return [
        rate(OURS, f"SyncClient.enqueue from {THREADS} threads, confirms ({queue_type})", sync),
        rate(OURS, f"  beside enqueue_many, window 1000 ({queue_type})", many),
        at_least("  / enqueue_many", sync.rate, many.rate, TARGET),
    ]
