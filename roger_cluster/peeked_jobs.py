"""Jobs read from messages a peek left in place: queued ones and buried ones.

`Client.queued` and `Client.buried` peek at a queue (`Broker.peek`: the
messages are taken unacked and all given back) and show each message as a
job. A message that does not decode is still shown, with its id from the
AMQP properties and why it cannot be read: a peek must never hide a message.
`unburied` is the other use of a buried message: made new again for
`Client.retry_buried`, without its evidence (see `evidence.py`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

from .broker import Moved, Peeked
from .codec import JobMessage, decode, encode
from .errors import DecodeError, JobError
from .evidence import Evidence, without_evidence


@dataclass(frozen=True)
class BuriedJob:
    """A job in a `.buried` queue, with the evidence of why it is there."""

    id: str | None
    job: str | None
    args: Any
    retry_count: int | None
    reason: str
    error_type: str | None
    traceback: str | None
    node: str | None
    failed_at: float | None

    @classmethod
    def from_peeked(cls, peeked: Peeked) -> BuriedJob:
        """Read a buried message; one that cannot be decoded still shows its reason."""
        try:
            message: JobMessage | None = decode(peeked.body)
        except DecodeError:
            message = None
        evidence = Evidence.from_headers(peeked.headers)
        return cls(
            id=message.id if message else peeked.properties.get("message_id"),
            job=message.job if message else peeked.properties.get("type"),
            args=message.args if message else None,
            retry_count=message.retry_count if message else None,
            reason=evidence.reason,
            error_type=evidence.error_type,
            traceback=evidence.traceback,
            node=evidence.node,
            failed_at=evidence.failed_at,
        )


@dataclass(frozen=True)
class QueuedJob:
    """A job waiting in a partition queue, as a peek saw it."""

    id: str | None
    job: str | None
    args: Any
    retry_count: int | None
    enqueued_at: float | None
    queue_key: str | None
    execution_key: str | None
    error: str | None  # why the body could not be read; the message is still there

    @classmethod
    def from_peeked(cls, peeked: Peeked) -> QueuedJob:
        """Read a queued message; one that cannot be decoded still shows its id and why."""
        try:
            message = decode(peeked.body)
        except DecodeError as e:
            properties = peeked.properties
            return cls(
                id=properties.get("message_id"),
                job=properties.get("type"),
                args=None,
                retry_count=None,
                enqueued_at=None,
                queue_key=None,
                execution_key=None,
                error=str(e),
            )
        return cls(
            message.id,
            message.job,
            message.args,
            message.retry_count,
            message.enqueued_at or None,
            message.queue_key,
            message.execution_key,
            None,
        )


def queue_key_of(peeked: Peeked) -> str | None:
    """The queue key of a peeked job, if it has one (and is one of ours)."""
    try:
        return decode(peeked.body).queue_key
    except DecodeError:
        return None


def unburied(peeked: Peeked, routing_key: str) -> Moved:
    """A buried message made new again: evidence headers dropped, retry count reset."""
    body = peeked.body
    with contextlib.suppress(DecodeError, JobError):
        body = encode(replace(decode(body), retry_count=0))
    headers = without_evidence(peeked.headers)
    return Moved(routing_key, body, {**peeked.properties, "headers": headers})
