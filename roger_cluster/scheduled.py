"""What waits in the delay levels for a partition, for the client (`rogerctl job scheduled`).

The levels are shared by every partition of the namespace, so each is read
whole (`Broker.read_whole`: nothing reordered, nothing taken) and its jobs
picked by their target queue. A level holding more than `READ_CAP` messages
is not read, only counted, and said so: its jobs may belong to any partition.
A message that does not decode is still shown, with its id from the AMQP
properties: a peek must never hide a message.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .broker import DUE_HEADER, TARGET_HEADER, Broker, Peeked
from .codec import decode
from .delays import LEVELS
from .errors import DecodeError
from .names import check_partition, delay_queue_name, due_queue_name

# A level holding more messages than this is counted, not read (a whole read holds them
# all unacked in memory for a moment).
READ_CAP = 10_000

# Delay bands (upper bound in seconds, label) for the counts of `job scheduled`.
BANDS: tuple[tuple[float, str], ...] = (
    (60, "within a minute"),
    (3600, "within an hour"),
    (86400, "within a day"),
    (7 * 86400, "within a week"),
    (float("inf"), "later"),
)


@dataclass(frozen=True)
class ScheduledJob:
    """A job waiting in the delay levels: a delayed job, or a retry waiting its delay."""

    id: str | None
    """The job id; None if the body could not be read."""
    job: str | None
    """The job class, `module:Class`."""
    queue: str | None
    """The queue of the partition it goes to once due."""
    due: float | None  # Unix time
    """When it is due (Unix time)."""
    retry_count: int | None
    """Retries so far: >0 for a retry waiting."""
    level: int  # the level queue it waits in now
    """The delay level queue it waits in now."""
    error: str | None = None  # why the body could not be read; the message is still there
    """Why the body could not be read; the message is still there."""

    @classmethod
    def from_peeked(cls, peeked: Peeked, level: int) -> ScheduledJob:
        """Read a message of a level queue; one that cannot be decoded still shows its id."""
        due = peeked.headers.get(DUE_HEADER)
        due_at = due / 1000 if isinstance(due, int | float) and not isinstance(due, bool) else None
        try:
            message = decode(peeked.body)
        except DecodeError as e:
            properties = peeked.properties
            return cls(
                properties.get("message_id"), properties.get("type"), None, due_at, None, level, str(e)
            )
        return cls(message.id, message.job, message.queue, due_at, message.retry_count, level)


@dataclass(frozen=True)
class Scheduled:
    """What waits for one partition: its jobs (soonest first, up to a limit), their count
    per delay band, and the levels too full to read."""

    partition: str
    """The partition asked about."""
    total: int  # jobs of the partition found in the levels read
    """Jobs of the partition found in the delay levels read."""
    bands: dict[str, int]
    """How many are due within each band (\"within a minute\", \"within an hour\"...)."""
    jobs: list[ScheduledJob]
    """The jobs found, soonest first (at most the limit asked)."""
    unread: dict[int, int] = field(default_factory=dict)  # level -> messages (any partition)
    """Levels too long to read whole: level -> messages (of any partition)."""
    due_now: int = 0  # messages of the namespace due and being moved to their queues
    """Messages of the namespace due and being moved to their queues."""


def band_of(seconds: float) -> str:
    """The delay band of a job due `seconds` from now."""
    return next(label for bound, label in BANDS if seconds < bound)


async def read_scheduled(
    broker: Callable[[], Awaitable[Broker]], namespace: str, partition: str, limit: int
) -> Scheduled:
    """Read every delay level of the namespace and keep what goes to `partition`."""
    check_partition(partition)
    connected = await broker()
    prefix = f"{partition}-"
    found: list[ScheduledJob] = []
    unread: dict[int, int] = {}
    for level in reversed(range(LEVELS)):
        count, messages = await connected.read_whole(delay_queue_name(namespace, level), READ_CAP)
        if messages is None:
            unread[level] = count
            continue
        for peeked in messages:
            target = peeked.headers.get(TARGET_HEADER)
            if isinstance(target, bytes):
                target = target.decode(errors="replace")
            if isinstance(target, str) and target.startswith(prefix):
                found.append(ScheduledJob.from_peeked(peeked, level))
    due = await connected.stats(due_queue_name(namespace))
    now = time.time()
    bands = {label: 0 for _, label in BANDS}
    for job in found:
        bands[band_of((job.due or now) - now)] += 1
    found.sort(key=lambda j: (j.due is None, j.due or 0.0))
    return Scheduled(partition, len(found), bands, found[:limit], unread, due.ready if due else 0)
