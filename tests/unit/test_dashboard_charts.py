"""The dashboard's chart counts: 10 s buckets per queue and jobs/s per node, from history events;
and the incremental reader counting each event once across its overlapping reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

from roger_cluster.dashboard.charts import Counts, Throughput, count
from roger_cluster.history import HistoryReader, JobEvent


def event(at: float, kind: str, job_id: str = "j", queue: str = "default", node: str = "n1") -> JobEvent:
    return JobEvent(at, kind, job_id, "m:C", "p", queue, node, 1)


def test_buckets_count_succeeded_and_failed_attempts_per_queue() -> None:
    counts = count(
        [
            event(1000.0, "started"),  # not an end: not counted
            event(1001.0, "succeeded"),
            event(1009.9, "retried"),
            event(1010.0, "buried"),
            event(1011.0, "succeeded", queue="other"),
            event(1012.0, "cancelled"),  # ends an attempt (node rate), neither ok nor failed
        ]
    )
    data = counts.series(now=1015.0, window=30.0)
    assert data["bucket"] == 10.0 and data["start"] == 990.0
    by_queue = {s["queue"]: s for s in data["series"]}
    assert by_queue["default"]["succeeded"] == [0, 1, 0]
    assert by_queue["default"]["failed"] == [0, 1, 1]
    assert by_queue["other"]["succeeded"] == [0, 0, 1]
    # 5 attempts ended in the buckets from 1000 to 1020 (two whole buckets)
    assert counts.node_rates(now=1015.0, over=20.0) == {"n1": 0.25}


def test_trim_forgets_buckets_older_than_the_window() -> None:
    counts = Counts()
    for at in (100.0, 200.0, 300.0):
        counts.add(event(at, "succeeded"))
    counts.trim(before=200.0)
    assert sorted(counts.queues[("p", "default")]) == [20, 30]
    assert sorted(counts.nodes["n1"]) == [20, 30]


class FakeStream(HistoryReader):
    """The reader's filter over events held in memory (the stream itself is tested in integration)."""

    def __init__(self, events: list[JobEvent]) -> None:
        self.held = events
        self.reads: list[float | None] = []

    async def events(self, since: float | None, keep: object = None) -> AsyncIterator[JobEvent]:
        self.reads.append(since)
        for e in self.held:
            if since is None or e.at >= since:
                yield e


async def test_reads_overlap_and_count_each_event_once() -> None:
    now = [10_000.0]
    stream = FakeStream([event(9_990.0, "succeeded", "a"), event(9_999.0, "succeeded", "b")])
    charts = Throughput(stream, min_interval=0, clock=lambda: now[0])
    first = await charts.get()
    assert stream.reads == [10_000.0 - 900.0]
    assert sum(first["series"][0]["succeeded"]) == 2
    # Read again 3 s later: from 5 s before the last read began; "b" is met again, not counted again.
    now[0] = 10_003.0
    stream.held.append(event(10_001.0, "retried", "c"))
    second = await charts.get()
    assert stream.reads[-1] == 10_000.0 - 5.0
    assert sum(second["series"][0]["succeeded"]) == 2 and sum(second["series"][0]["failed"]) == 1
    assert second["nodes"] == {"n1": round(3 / 60, 2)}
