"""Prometheus metrics of one node, in a registry of its own.

Counters by partition and queue for every way a job can end, a duration
histogram, counters per schedule (ticks fired, misfired, duplicates dropped),
and gauges read when scraped (running jobs, consumers, connection state).
Label children are cached, so counting a job costs a dict lookup and an
increment, not a label resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

ENDINGS = ("succeeded", "failed", "retried", "buried", "cancelled", "requeued")


class Metrics:
    """The node's metrics; `render()` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("partition", "queue")
        self._started = Counter(
            "roger_jobs_started", "Jobs that started running.", labels, registry=self.registry
        )
        self._ended = {
            ending: Counter(
                f"roger_jobs_{ending}", f"Jobs that ended {ending}.", labels, registry=self.registry
            )
            for ending in ENDINGS
        }
        self._duration = Histogram(
            "roger_job_duration_seconds", "Time from a job's start to its end.", labels,
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800),
        )  # fmt: skip
        self._children: dict[tuple[str, str, str], MetricWrapperBase] = {}
        self._schedule = {
            "fired": Counter(
                "roger_schedule_firings", "Ticks this node fired, per schedule.", ("schedule",),
                registry=self.registry,
            ),
            "misfired": Counter(
                "roger_schedule_misfires",
                "Ticks this node skipped when it claimed (missed while down, or over a cap), per schedule.",
                ("schedule",), registry=self.registry,
            ),
            "duplicate": Counter(
                "roger_schedule_duplicates",
                "Second copies of a tick's job this node dropped unrun, per schedule.",
                ("schedule",), registry=self.registry,
            ),
        }  # fmt: skip

    def _child(self, name: str, metric: MetricWrapperBase, partition: str, queue: str) -> MetricWrapperBase:
        key = (name, partition, queue)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(partition, queue)
        return child

    def started(self, partition: str, queue: str) -> None:
        """A job started."""
        self._child("started", self._started, partition, queue).inc()  # type: ignore[attr-defined]

    def ended(self, partition: str, queue: str, ending: str, seconds: float | None = None) -> None:
        """A job ended in one of ENDINGS, after `seconds` if it ran."""
        self._child(ending, self._ended[ending], partition, queue).inc()  # type: ignore[attr-defined]
        if seconds is not None:
            self._child("duration", self._duration, partition, queue).observe(seconds)  # type: ignore[attr-defined]

    def schedule(self, schedule: str, what: str, count: int = 1) -> None:
        """Count ticks of a schedule: `fired`, `misfired` or `duplicate`."""
        if count:
            self._schedule[what].labels(schedule).inc(count)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A value read at each scrape."""
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def counted(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A counter kept elsewhere (an int attribute), read at each scrape."""
        self.registry.register(_ReadCounter(name, help_text, read))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _ReadCounter(Collector):
    """A counter whose value is read from a function at each scrape."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help_text, self.read = name, help_text, read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.help_text, value=self.read())
