"""Job messages <-> bytes: msgpack, versioned, validated on the way in.

This is the wire format every node and client agrees on (documented in
`docs/message-format.md`). `decode` never trusts its input: anything that is
not a well-formed message of a known version raises `DecodeError`, which the
consumer turns into a buried message instead of a crash or a redelivery loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import DecodeError, JobError
from .job import Job
from .names import check_queue

CONTENT_TYPE = "application/x-msgpack"
FORMAT_VERSION = 1

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "job": str,
    "queue": str,
    "retry_count": int,
    "enqueued_at": (int, float),
}
_OPTIONAL_STR = ("queue_key", "execution_key", "schedule", "firing")
# Written only when set, so a message without them reads the same to a node of
# an earlier release (which refuses fields it does not know).
_ONLY_WHEN_SET = ("scheduled_at", "schedule", "firing")


@dataclass(frozen=True)
class JobMessage:
    """One job as it travels through RabbitMQ."""

    id: str
    """The job id."""
    job: str
    """The job class, as `module:QualName`."""
    args: Any
    """The job's arguments."""
    queue: str
    """The queue of the partition it goes to."""
    queue_key: str | None = None
    """Its queue key (at most one queued job per key), if any."""
    execution_key: str | None = None
    """Its execution key (at most one running job per key), if any."""
    retry_count: int = 0
    """How many times it was retried so far."""
    enqueued_at: float = 0.0
    """When it was first enqueued (Unix time)."""
    scheduled_at: float | None = None
    """When it was meant to run (Unix time): a delayed job's due time or a schedule's tick."""
    schedule: str | None = None  # the schedule that fired it
    """The schedule that fired it, if one did."""
    firing: str | None = None
    """Which publish of a schedule's tick this is: the tick's etcd record names the one
    copy that may run, so a tick fired again after its first firer died runs once."""

    @classmethod
    def from_job(cls, job: Job, queue: str | None = None) -> JobMessage:
        """The message for `job`, going to `queue` (default: the job's own choice)."""
        target = check_queue(queue if queue is not None else job.queue_for(job.args))
        return cls(
            id=job.id,
            job=job.path(),
            args=job.args,
            queue=target,
            queue_key=job.queue_key(job.args),
            execution_key=job.execution_key(job.args),
            enqueued_at=time.time(),
        )


_FIELDS = tuple(JobMessage.__dataclass_fields__)
_ALLOWED = frozenset(_FIELDS)


def encode(message: JobMessage, max_bytes: int | None = None) -> bytes:
    """Serialize `message`; JobError if its args cannot be sent or are too big."""
    # Shallow on purpose: asdict() would deep-copy the args only for msgpack to read them.
    fields = {name: getattr(message, name) for name in _FIELDS}
    for name in _ONLY_WHEN_SET:
        if fields[name] is None:
            del fields[name]
    fields["v"] = FORMAT_VERSION
    try:
        body: bytes = msgpack.packb(fields, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as e:
        raise JobError(f"job {message.id} args cannot be serialized with msgpack: {e}") from e
    if max_bytes is not None and len(body) > max_bytes:
        raise JobError(f"job {message.id} is {len(body)} bytes once encoded, over the limit of {max_bytes}")
    return body


def decode(body: bytes) -> JobMessage:
    """Parse and validate a message body; DecodeError if it is not one of ours."""
    try:
        fields = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"body is not valid msgpack: {e}") from e
    if not isinstance(fields, dict):
        raise DecodeError(f"body is a msgpack {type(fields).__name__}, not a map")
    version = fields.pop("v", None)
    if version != FORMAT_VERSION:
        raise DecodeError(f"unsupported message format version {version!r}")
    for name, kind in _REQUIRED.items():
        if not isinstance(fields.get(name), kind) or isinstance(fields.get(name), bool):
            raise DecodeError(f"field {name!r} is missing or not of type {kind}")
    for name in _OPTIONAL_STR:
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise DecodeError(f"field {name!r} must be a string or nil")
    at = fields.get("scheduled_at")
    if at is not None and (not isinstance(at, (int, float)) or isinstance(at, bool)):
        raise DecodeError("field 'scheduled_at' must be a number or nil")
    if "args" not in fields:
        raise DecodeError("field 'args' is missing")
    unknown = fields.keys() - _ALLOWED
    if unknown:
        raise DecodeError(f"unknown fields {sorted(unknown)}")
    return JobMessage(**fields)
