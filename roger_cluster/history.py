"""The job history: what every node records about each job, and how to read it back.

Every node appends each job's transitions (started, succeeded, retried,
buried, cancelled, requeued, refused) to one RabbitMQ stream per namespace
(`names.history_stream_name`), batched: one message holds up to a few
hundred events of one node (`runtime/recorder.py` writes them). A stream is
read from an offset by any number of readers without being consumed, and
RabbitMQ trims it by age and size, so history costs no etcd write, no
database and no per-job message (docs/history.md, docs/decisions.md).

"Enqueued" is not an event: the client's enqueue stays one publish. The
first event a node records carries the job's `enqueued_at`, which says when
it was enqueued and, with the start time, how long it waited.

This module is the wire format of a batch (`encode_batch` / `decode_batch`)
and the reader (`HistoryReader`), shared by rogerctl and the dashboard.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from .broker import Broker
from .errors import DecodeError
from .names import history_stream_name

FORMAT_VERSION = 1
# What a job's transitions are called, in the stream and in `rogerctl job history --state`.
KINDS = ("started", "succeeded", "retried", "buried", "cancelled", "requeued", "refused")
# `--state failed` means an attempt that raised: retried or buried.
FAILED_KINDS = frozenset({"retried", "buried"})
STATES = ("failed", *KINDS)

# One event as the recorder appends it (a tuple, the cheapest thing to make on the hot
# path): at, kind, job id, job class, partition, queue, attempt, duration, enqueued_at,
# error type, error message, traceback, retry delay.
EventTuple = tuple[
    float,
    str,
    str,
    str,
    str,
    str,
    int,
    float | None,
    float | None,
    str | None,
    str | None,
    str | None,
    int | None,
]
_FIELDS = 13


@dataclass(frozen=True)
class JobEvent:
    """One transition of one job, as a node recorded it."""

    at: float
    """When it happened (Unix time, the node's clock)."""
    kind: str
    """One of KINDS."""
    job_id: str
    """The job id."""
    job_class: str
    """The job class, `module:Class`."""
    partition: str
    """Its partition."""
    queue: str
    """Its queue."""
    node: str
    """The node that recorded it."""
    attempt: int
    """1 for the first run, 2 for the first retry, ..."""
    duration: float | None = None
    """Seconds the attempt ran (an ending event that ran), else None."""
    enqueued_at: float | None = None
    """When the job was first enqueued (Unix time), if known."""
    error_type: str | None = None
    """The exception's class name, for an attempt that raised."""
    error_message: str | None = None
    """The exception's message."""
    traceback: str | None = None
    """The formatted traceback."""
    delay: int | None = None
    """Seconds before the next attempt, for a retried one."""

    @property
    def failed(self) -> bool:
        """Whether the attempt raised (retried or buried with an error)."""
        return self.error_type is not None


def encode_batch(node: str, events: Sequence[EventTuple]) -> bytes:
    """One stream message holding `events` of `node`."""
    body: bytes = msgpack.packb({"v": FORMAT_VERSION, "node": node, "events": events}, use_bin_type=True)
    return body


def decode_batch(body: bytes) -> list[JobEvent]:
    """The events of one stream message; DecodeError if it is not a batch of ours."""
    try:
        batch = msgpack.unpackb(body, raw=False)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"history batch is not valid msgpack: {e}") from e
    if not isinstance(batch, dict) or batch.get("v") != FORMAT_VERSION:
        raise DecodeError("history batch of an unknown format")
    node, rows = batch.get("node"), batch.get("events")
    if not isinstance(node, str) or not isinstance(rows, list):
        raise DecodeError("history batch without node or events")
    try:
        return [_event(node, row) for row in rows]
    except (TypeError, ValueError) as e:
        raise DecodeError(f"history event is malformed: {e}") from e


def _event(node: str, row: Any) -> JobEvent:
    if not isinstance(row, list) or len(row) < _FIELDS:
        raise ValueError(f"expected {_FIELDS} fields, got {row!r}")
    at, kind, job_id, job_class, partition, queue, attempt, duration, enqueued, etype, emsg, tb, delay = row[
        :_FIELDS
    ]
    return JobEvent(
        float(at), str(kind), str(job_id), str(job_class), str(partition), str(queue), node, int(attempt),
        duration, enqueued, etype, emsg, tb, delay,
    )  # fmt: skip


@dataclass(frozen=True)
class JobStory:
    """Where a job is now and every step it took (`rogerctl job show`)."""

    job_id: str
    """The job id."""
    events: list[JobEvent]
    """Its events, oldest first."""
    running_on: str | None
    """The node running it now, if one said so."""
    state: str
    """Where it is now, in a few words."""


def where_now(events: Sequence[JobEvent], running_on: str | None, now: float | None = None) -> str:
    """A job's state from its events (oldest first) and the node running it now, if any."""
    if running_on is not None:
        return f"running on {running_on}"
    if not events:
        return "unknown: no event recorded (not run yet, history off, or older than the read)"
    last = events[-1]
    if last.kind == "succeeded":
        return f"succeeded on {last.node}"
    if last.kind == "retried":
        due = last.at + (last.delay or 0)
        left = due - (now if now is not None else time.time())
        when = f"due in {left:.0f}s" if left > 0 else "due now"
        return f"waiting to retry (attempt {last.attempt + 1}, {when})"
    if last.kind == "buried":
        return f"buried in {last.partition}-{last.queue}.buried"
    if last.kind == "refused":
        return f"buried in {last.partition}-{last.queue}.buried (refused by {last.node})"
    if last.kind == "cancelled":
        return "cancelled"
    if last.kind == "requeued":
        return f"back in {last.partition}-{last.queue} (its node shut down)"
    # started, and no node runs it: its node died or was cut off mid-run.
    return f"started on {last.node} without an end: that node died or lost RabbitMQ; the job runs again"


EventFilter = Callable[[JobEvent], bool]


class HistoryReader:
    """Reads a namespace's job history from its stream; nothing is consumed."""

    def __init__(self, broker: Callable[[], Any], namespace: str) -> None:
        """`broker` is an async getter of a connected `Broker` (the client's)."""
        self._broker = broker
        self.stream = history_stream_name(namespace)
        """The stream's name."""

    async def events(self, since: float | None, keep: EventFilter | None = None) -> AsyncIterator[JobEvent]:
        """Every event at or after `since` (Unix time; None: all kept) that `keep` accepts,
        oldest first. No stream (history never on): no events. A batch that does not
        decode is skipped."""
        broker: Broker = await self._broker()
        if not await broker.stream_exists(self.stream):
            return
        async for entry in broker.read_stream(self.stream, since):
            try:
                batch = decode_batch(entry.body)
            except DecodeError:
                continue
            for event in batch:
                if (since is None or event.at >= since) and (keep is None or keep(event)):
                    yield event

    async def job(self, job_id: str, since: float | None) -> list[JobEvent]:
        """The events of one job, oldest first."""
        return [e async for e in self.events(since, lambda e: e.job_id == job_id)]

    async def search(
        self,
        partition: str,
        *,
        queue: str | None = None,
        state: str | None = None,
        job_class: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[JobEvent]:
        """The latest `limit` events of `partition` that match, newest first: its queue,
        `state` (one of STATES; "failed" matches retried and buried) and class (the
        whole `module:Class`, or just `Class`)."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")

        def keep(e: JobEvent) -> bool:
            return (
                e.partition == partition
                and (queue is None or e.queue == queue)
                and (state is None or e.kind == state or (state == "failed" and e.kind in FAILED_KINDS))
                and (job_class is None or e.job_class == job_class or e.job_class.endswith(":" + job_class))
            )

        latest: list[tuple[float, int, JobEvent]] = []  # a min-heap of the `limit` latest
        async for n, event in _numbered(self.events(since, keep)):
            item = (event.at, n, event)
            if len(latest) < limit:
                heapq.heappush(latest, item)
            elif item > latest[0]:
                heapq.heapreplace(latest, item)
        return [event for _, _, event in sorted(latest, reverse=True)]


async def _numbered(events: AsyncIterator[JobEvent]) -> AsyncIterator[tuple[int, JobEvent]]:
    n = 0
    async for event in events:
        yield n, event
        n += 1
