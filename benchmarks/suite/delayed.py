"""Section 3, delayed jobs: how late a delayed job starts, and how fast delayed jobs are enqueued.

- Lateness: `samples` `DueStamp` jobs, each delayed `DELAY` s, one enqueued every `INTERVAL` s
  (light load), on the nodes of the matrix. Each records its due time (`context.scheduled_at`)
  and when `perform` began; the figure is the difference. It includes RabbitMQ's TTL expiry and
  dead-lettering through the delay levels, a node moving the job from the due queue to its
  partition queue, and the usual delivery.
- Enqueue rate: `Client.enqueue_many` of N jobs delayed an hour (they never come due during the
  run; the namespace's delay levels are deleted at the end), beside the same of N plain jobs,
  alternating, on the main queue type.
"""

from __future__ import annotations

import asyncio

from .figures import OURS, Work
from .jobs import Count, DueStamp
from .report import Row, ratio
from .rig import Measure, bounded, timed
from .timing import percentile, start, wait_stamps

DELAY = 2.0  # seconds each lateness job is delayed
INTERVAL = 0.05  # seconds between two lateness jobs
PARKED = 3600.0  # seconds the enqueue-rate jobs are delayed: past the end of the run


async def lateness(work: Work) -> list[float]:
    """Seconds from each delayed job's due time to its `perform` starting."""
    rig, cluster = work.rig, work.cluster()
    partition = await start(rig, cluster, "delayed")
    client = rig.clients[cluster.queue_type]
    count = rig.options.samples
    for i in range(count):
        await client.enqueue(DueStamp(i), partition, delay=DELAY)
        await asyncio.sleep(INTERVAL)
    stamps = await bounded("delayed jobs", wait_stamps(rig, partition, count, cluster.nodes), 60 + DELAY)
    if sorted(s.index for s in stamps) != list(range(count)):
        rig.miscounts.append(f"delayed: {len(stamps)} starts recorded for {count} jobs")
    await client.stop_partition(partition)
    return [s.started - s.enqueued for s in stamps]  # `enqueued` holds the due time here


async def enqueue_rates(work: Work) -> tuple[Measure, Measure]:
    """(plain, delayed) `enqueue_many` rates of N jobs, each into a partition of its own."""
    rig, queue_type = work.rig, work.options.queue_type
    client = rig.clients[queue_type]
    plain = await rig.partition("dplain", queue_type)
    delayed = await rig.partition("ddelayed", queue_type)
    n = rig.options.jobs
    measured_plain = await timed(n, lambda: client.enqueue_many([Count(i) for i in range(n)], plain))
    measured_delayed = await timed(
        n, lambda: client.enqueue_many([Count(i) for i in range(n)], delayed, delay=PARKED)
    )
    await rig.drop(plain)
    await rig.drop(delayed)
    return measured_plain, measured_delayed


async def rows(work: Work) -> list[Row]:
    ms = [s * 1000 for s in await lateness(work)]
    pace = f"{len(work.main)} nodes, delayed {DELAY:g} s, one every {INTERVAL * 1000:g} ms"
    plain, delayed = await enqueue_rates(work)
    queue_type = work.options.queue_type
    return [
        Row(OURS, "delayed job: due -> perform starts, p50", percentile(ms, 0.5), "ms", note=pace),
        Row(
            OURS,
            "delayed job: due -> perform starts, p99",
            percentile(ms, 0.99),
            "ms",
            note=f"{len(ms)} jobs",
        ),
        Row(OURS, "delayed job: due -> perform starts, max", max(ms), "ms"),
        Row(
            OURS,
            f"enqueue_many delayed, confirms, window 1000 ({queue_type})",
            delayed.rate,
            "jobs/s",
            delayed.cpu_us,
        ),
        Row(OURS, f"  beside enqueue_many plain ({queue_type})", plain.rate, "jobs/s", plain.cpu_us),
        Row(OURS, "  / plain", ratio(delayed.rate, plain.rate), "x", note="info"),
    ]
