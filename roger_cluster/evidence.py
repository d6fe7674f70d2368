"""The evidence a buried job carries: headers the node writes, the client reads back.

One owner for the protocol: the runtime writes these headers when it buries
a job (`failure_headers`: the job failed for good; `refusal_headers`: the
message could not run here), and the client reads them
(`Evidence.from_headers`, which also explains a message RabbitMQ
dead-lettered by itself) and strips them when a buried job is retried
(`without_evidence`). The header names are spelled here only (docs/jobs.md
lists them for operators). Pure: no I/O, imports nothing of roger_cluster,
so both the client and the runtime sit above it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "x-roger-"  # every evidence header starts with it
REASON = "x-roger-reason"
ERROR_TYPE = "x-roger-error-type"
ERROR_MESSAGE = "x-roger-error-message"
TRACEBACK = "x-roger-traceback"
NODE = "x-roger-node"
FAILED_AT = "x-roger-failed-at"
JOB = "x-roger-job"
DEATH = "x-death"  # RabbitMQ's own record of dead-lettering a message

TRACEBACK_LIMIT = 8000  # characters kept, from the end (where the error is)


def failure_headers(job_path: str, error: BaseException, node: str) -> dict[str, Any]:
    """The headers of a job buried because it failed for good: what failed, where and when."""
    return {
        REASON: f"{type(error).__name__}: {error}",
        ERROR_TYPE: type(error).__name__,
        ERROR_MESSAGE: str(error),
        TRACEBACK: "".join(traceback.format_exception(error))[-TRACEBACK_LIMIT:],
        NODE: node,
        FAILED_AT: time.time(),
        JOB: job_path,
    }


def refusal_headers(reason: str, node: str) -> dict[str, Any]:
    """The headers of a message buried because it cannot run here (not a job, a class
    not allowed): why, and which node said so."""
    return {REASON: reason, NODE: node}


def without_evidence(headers: Mapping[str, Any]) -> dict[str, Any]:
    """`headers` with the evidence dropped, ours and RabbitMQ's: a buried job made new again."""
    return {k: v for k, v in headers.items() if not k.startswith((PREFIX, DEATH))}


@dataclass(frozen=True)
class Evidence:
    """Why a message is in a `.buried` queue, as its headers say."""

    reason: str  # "" if nothing says why
    error_type: str | None
    traceback: str | None
    node: str | None
    failed_at: float | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, Any]) -> Evidence:
        """Read the evidence a node wrote; a message RabbitMQ dead-lettered by itself has
        none, and its reason comes from RabbitMQ's `x-death` record instead."""
        return cls(
            reason=_text(headers.get(REASON)) or _dead_letter_reason(headers),
            error_type=_text(headers.get(ERROR_TYPE)),
            traceback=_text(headers.get(TRACEBACK)),
            node=_text(headers.get(NODE)),
            failed_at=float(headers[FAILED_AT]) if FAILED_AT in headers else None,
        )


def _dead_letter_reason(headers: Mapping[str, Any]) -> str:
    """Why RabbitMQ itself dead-lettered a message here (the delivery limit)."""
    deaths = headers.get(DEATH)
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], dict):
        return ""
    death = deaths[0]
    reason = _text(death.get("reason")) or "dead-lettered"
    if reason == "delivery_limit":
        return (
            "delivered more times than the queue's delivery limit without an ack:"
            " the job may crash its node (poison message)"
        )
    return f"dead-lettered by RabbitMQ from {_text(death.get('queue'))}: {reason}"


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)
