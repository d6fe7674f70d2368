"""One value per execution, and the outcome that says how it is settled.

A delivery goes one way through the runtime (`pipeline.py`): decoded once
into an `Execution`, run by the worker, which returns an `Outcome`, and
settled by `settle.py` from that outcome alone. The execution carries what
every step needs (partition, queue, delivery, message, job, fencing token,
start time), so no step passes `(partition, message, job)` to the next.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from typing import Any

from ..broker import Delivery
from ..codec import JobMessage
from ..job import Job


class Action(enum.Enum):
    """What settling does with the delivery."""

    ACK = "ack"  # done, failed for good and logged, cancelled, or parked
    RETRY = "retry"  # publish `message` through the delay levels for `delay` s, then ack
    BURY = "bury"  # publish to the buried queue with `headers`, then ack
    REQUEUE = "requeue"  # give it back to RabbitMQ (shutdown): not a retry


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one execution ended, and so what to do with its delivery."""

    action: Action
    # How the job ended, for callbacks and metrics: one of metrics.ENDINGS, or
    # "parked" (handed to its execution key) and "refused" (never ran: bad message).
    ending: str = "succeeded"
    result: Any = None  # what `perform` returned
    error: BaseException | None = None  # why it failed
    headers: dict[str, Any] = field(default_factory=dict)  # evidence a buried message carries
    message: JobMessage | None = None  # the message a retry publishes
    delay: int = 0  # seconds before the retry
    # A job that could not be stopped (a sync job's thread), or the chain a parked
    # job started: the slot of the delivery stays taken until this completes.
    lingering: asyncio.Future[Any] | None = None


DONE = Outcome(Action.ACK)


@dataclass(slots=True)
class Execution:
    """One delivery on its way through the runtime."""

    partition: str
    queue: str  # the partition queue the job belongs to (its buried queue follows; a retry returns to it)
    delivery: Delivery
    message: JobMessage | None = None  # None until decoded, and for a body that is not a job
    job: Job | None = None  # set once the class is resolved
    token: int | None = None  # the fencing token, for a job run under its execution key's lock
    started: float = 0.0  # time.monotonic() when perform began

    @property
    def chained(self) -> bool:
        """Whether this job came from its execution key's waiting queue (run by a holder)."""
        return self.token is not None

    def log_fields(self) -> dict[str, str]:
        """What every log record about the job carries (the JSON log format shows them)."""
        message = self.message
        return {
            "job_id": message.id if message else str(self.delivery.message_id),
            "job_class": message.job if message else "",
            "partition": self.partition,
            "queue": self.queue,
        }
