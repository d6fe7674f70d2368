"""What the dashboard's history views cost: the figures of docs/dashboard.md#cost. Not a test.

A history stream of its own (namespace `benchdash-<random>`, deleted at the end) is filled
with N synthetic job events (a job each: started then succeeded, or failed), written as the
nodes write them: msgpack batches of 500 events (`history.encode_batch`), over the last 15
minutes, across 10 queues and 4 nodes. Then, timed (median of `--rounds`):

- the charts' first read (`Throughput`: the whole 15 min window), and a following read (from
  5 s before the previous one, after one more batch): what an open overview costs every 2 s
  (the events are written first, then left to age past those 5 s: a stream read starts by
  the time each chunk was written, not by the events' own times);
- the job page's stream read (`Client.job_events`, the last 24 h, one job's events kept);
- the history table's read (`Client.job_history`, state failed, since 1 h, limit 100).

Needs only RabbitMQ (3.9+, streams): `--amqp-url`, default the shared one on 127.0.0.1.
`--json` prints rows {"section": "dashboard views", "figure", "value", "unit"}; else a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from roger_cluster import Client
from roger_cluster.broker import StreamSettings
from roger_cluster.dashboard.charts import OVERLAP, Throughput
from roger_cluster.history import EventTuple, HistoryReader, encode_batch
from roger_cluster.names import history_stream_name

BATCH = 500
QUEUES = [f"q{i}" for i in range(10)]
NODES = [f"node{i}" for i in range(4)]
SETTINGS = StreamSettings(max_age=3600, max_bytes=1 << 30, segment_bytes=16 << 20)
Row = tuple[str, float, str]


def job_events(now: float, count: int, rng: random.Random) -> list[tuple[str, EventTuple]]:
    """(node, event) pairs: `count` events, two per job, spread over the last 15 min."""
    events: list[tuple[str, EventTuple]] = []
    error = ("RuntimeError", "boom", "Traceback (most recent call last): ...")
    for _ in range(count // 2):
        at, job_id = now - rng.uniform(1, 890), uuid.uuid4().hex
        queue, node = rng.choice(QUEUES), rng.choice(NODES)
        head = (job_id, "app.jobs:Work", "bench", queue, 1)
        events.append((node, (at, "started", *head, None, at - 0.01, None, None, None, None)))
        if rng.random() < 0.05:
            events.append((node, (at + 0.002, "buried", *head, 0.002, None, *error, None)))
        else:
            events.append((node, (at + 0.002, "succeeded", *head, 0.002, None, None, None, None, None)))
    events.sort(key=lambda pair: pair[1][0])
    return events


async def fill(client: Client, stream: str, events: list[tuple[str, EventTuple]]) -> None:
    broker = await client.broker()
    await broker.declare_stream(stream, SETTINGS)
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        by_node: dict[str, list[EventTuple]] = {}
        for node, event in chunk:
            by_node.setdefault(node, []).append(event)
        for node, rows in by_node.items():
            await broker.append(stream, encode_batch(node, rows))


async def timed(action: Callable[[], Awaitable[object]], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def measure(amqp_url: str, count: int, rounds: int) -> list[Row]:
    namespace = f"benchdash-{uuid.uuid4().hex[:8]}"
    stream = history_stream_name(namespace)
    rng = random.Random(17)
    async with Client(amqp_url, "127.0.0.1:1", namespace) as client:  # no etcd needed
        events = job_events(time.time(), count, rng)
        try:
            await fill(client, stream, events)
            # RabbitMQ finds a read's start by when each chunk was written: all of them were just
            # now. Let them age past the charts' overlap, as 15 min of real writes would be.
            await asyncio.sleep(OVERLAP + 1)
            reader = HistoryReader(client.broker, namespace)

            async def first_read() -> None:
                await Throughput(reader, min_interval=0).get()

            charts = Throughput(reader, min_interval=0)
            await charts.get()
            broker = await client.broker()
            extra = job_events(time.time(), BATCH, rng)

            async def next_read() -> None:
                await broker.append(stream, encode_batch("node0", [e for _, e in extra]))
                await charts.get()

            some_job = events[len(events) // 2][1][2]
            rows: list[Row] = [
                (f"history stream: events over the last 15 min, in batches of {BATCH}", count, "events"),
                ("charts, first read (15 min of the stream)", await timed(first_read, rounds), "s"),
                (f"charts, a following read (+{BATCH} events)", await timed(next_read, rounds), "s"),
                (
                    "job page, stream read (last 24 h)",
                    await timed(lambda: client.job_events(some_job, time.time() - 86400), rounds),
                    "s",
                ),  # fmt: skip
                (
                    "history table (failed, since 1 h, limit 100)",
                    await timed(
                        lambda: client.job_history("bench", state="failed", since=time.time() - 3600), rounds
                    ),
                    "s",
                ),  # fmt: skip
            ]
        finally:
            broker = await client.broker()
            await broker.delete_queue(stream)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--events", type=int, default=100_000, help="events in the stream (%(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, median (default %(default)s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(measure(args.amqp_url, args.events, args.rounds))
    if args.json:
        for figure, value, unit in rows:
            print(json.dumps({"section": "dashboard views", "figure": figure, "value": value, "unit": unit}))
        return
    for figure, value, unit in rows:
        shown = f"{value:,.0f}" if unit == "events" else f"{value:.3f}"
        print(f"{figure:<62} {shown:>10} {unit}")
    print(f"({args.rounds} rounds, median; {time.strftime('%Y-%m-%d')})", file=sys.stderr)


if __name__ == "__main__":
    main()
