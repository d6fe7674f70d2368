"""The dashboard's charts: jobs ended and failed per partition queue, in 10 s buckets over 15 min.

Why it exists: "how fast is it going, and is it failing?" is the question a
chart answers at a glance, and the numbers must not come from the browser
(each tab would read the stream) nor from the management API (its rates say
messages, not outcomes). They come from the job history stream
(`history.py`), aggregated here, once for every open page.

Cost: the first read covers the whole window (15 min of the stream); after
that each read starts `OVERLAP` seconds before the previous one began, at
most one read every `min_interval` seconds, whatever the number of pages.
Events seen twice in the overlap are counted once (`_key`). A node's batch
that reaches the stream more than `OVERLAP` seconds after its events
happened (a node cut off from RabbitMQ for longer) is not counted.
Memory: the counts per bucket, never the events.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from ..history import FAILED_KINDS, HistoryReader, JobEvent

BUCKET = 10.0
"""Seconds a chart's bucket covers."""
WINDOW = 900.0
"""Seconds a chart covers (15 min)."""
OVERLAP = 5.0
"""Seconds each read goes back before the previous read began (batches arrive up to 100 ms late)."""
NODE_RATE_WINDOW = 60.0
"""Seconds a node's jobs/s is averaged over."""
ENDED_KINDS = frozenset({"succeeded", "retried", "buried", "cancelled"})

Json = dict[str, Any]
EventKey = tuple[str, str, str, int, float]


def _key(e: JobEvent) -> EventKey:
    return (e.node, e.job_id, e.kind, e.attempt, e.at)


class Counts:
    """Counts of ended and failed attempts per (partition, queue) and per node, by bucket."""

    def __init__(self, bucket: float = BUCKET) -> None:
        self.bucket = bucket
        # (partition, queue) -> bucket index -> [succeeded, failed]
        self.queues: dict[tuple[str, str], dict[int, list[int]]] = defaultdict(dict)
        # node -> bucket index -> attempts ended
        self.nodes: dict[str, dict[int, int]] = defaultdict(dict)

    def add(self, e: JobEvent) -> None:
        """Count one event (only the kinds that end an attempt count)."""
        if e.kind not in ENDED_KINDS:
            return
        index = int(e.at // self.bucket)
        row = self.queues[(e.partition, e.queue)].setdefault(index, [0, 0])
        if e.kind == "succeeded":
            row[0] += 1
        elif e.kind in FAILED_KINDS:
            row[1] += 1
        self.nodes[e.node][index] = self.nodes[e.node].get(index, 0) + 1

    def trim(self, before: float) -> None:
        """Forget the buckets that end before `before`."""
        first = int(before // self.bucket)
        for rows in self.queues.values():
            for index in [i for i in rows if i < first]:
                del rows[index]
        for ended in self.nodes.values():
            for index in [i for i in ended if i < first]:
                del ended[index]

    def series(self, now: float, window: float) -> Json:
        """The chart data: bucket start times, and per queue the counts in each bucket."""
        last = int(now // self.bucket)
        indexes = range(last - int(window // self.bucket) + 1, last + 1)
        series = []
        for (partition, queue), table in sorted(self.queues.items()):
            rows = [table.get(i, [0, 0]) for i in indexes]
            series.append(
                {
                    "partition": partition,
                    "queue": queue,
                    "succeeded": [r[0] for r in rows],
                    "failed": [r[1] for r in rows],
                }
            )
        return {"bucket": self.bucket, "start": indexes[0] * self.bucket, "series": series}

    def node_rates(self, now: float, over: float = NODE_RATE_WINDOW) -> dict[str, float]:
        """Attempts ended per second by each node over the last `over` seconds (whole buckets)."""
        first = int((now - over) // self.bucket) + 1
        span = (int(now // self.bucket) - first + 1) * self.bucket
        return {
            node: round(sum(n for i, n in table.items() if i >= first) / span, 2)
            for node, table in sorted(self.nodes.items())
        }


def count(events: Iterable[JobEvent], bucket: float = BUCKET) -> Counts:
    """The counts of `events` (pure: for tests and one-off reads)."""
    counts = Counts(bucket)
    for e in events:
        counts.add(e)
    return counts


class Throughput:
    """The chart data, read incrementally from the history stream; one read at a time."""

    def __init__(
        self,
        reader: HistoryReader,
        *,
        window: float = WINDOW,
        bucket: float = BUCKET,
        min_interval: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = reader
        self.window = window
        self.min_interval = min_interval
        self._clock = clock
        self._counts = Counts(bucket)
        self._read_from: float | None = None  # where the next read starts
        self._last_read = 0.0  # monotonic time of the last read
        self._seen: dict[EventKey, float] = {}  # events of the overlap, to count each once
        self._lock = asyncio.Lock()
        self._latest: Json | None = None

    async def get(self) -> Json:
        """The chart data, at most `min_interval` seconds old."""
        async with self._lock:
            if self._latest is None or time.monotonic() - self._last_read >= self.min_interval:
                self._latest = await self._read()
                self._last_read = time.monotonic()
            return self._latest

    async def _read(self) -> Json:
        now = self._clock()
        since = now - self.window if self._read_from is None else max(self._read_from, now - self.window)
        # Read whole before counting: a read that fails halfway counts nothing, and the next
        # one starts from the same place.
        events = [e async for e in self.reader.events(since)]
        seen: dict[EventKey, float] = {}
        for e in events:
            key = _key(e)
            if key not in self._seen and key not in seen:
                self._counts.add(e)
            seen[key] = e.at
        # Keep only the keys a next read (from `now - OVERLAP`) can meet again.
        self._seen = {k: at for k, at in {**self._seen, **seen}.items() if at >= now - OVERLAP}
        self._read_from = now - OVERLAP
        self._counts.trim(now - self.window)
        return {
            "time": now,
            "window": self.window,
            **self._counts.series(now, self.window),
            "nodes": self._counts.node_rates(now),
        }
