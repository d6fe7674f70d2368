"""AMQP messages as roger_cluster writes and reads them: a job's properties, what a
republish keeps, a message read from a queue.

One place for the properties, so an enqueue, a retry, a burial and a move
all put the same fields on the wire (`tests/integration/test_wire.py`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode
from pamqp import commands as spec

from .. import tracing
from ..codec import CONTENT_TYPE, JobMessage

PERSISTENT = int(DeliveryMode.PERSISTENT)


def amqp_message(message: JobMessage, body: bytes, partition: str) -> aio_pika.Message:
    """The AMQP message carrying a job, as aio-pika builds it (the benchmark's bare publisher
    uses it); `Broker.publish` sends the same body and `amqp_properties`."""
    return aio_pika.Message(
        body,
        content_type=CONTENT_TYPE,
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=message.id,
        app_id=partition,
        type=message.job,
        timestamp=message.enqueued_at or None,
    )


def amqp_properties(message: JobMessage, partition: str) -> spec.Basic.Properties:
    """The properties of a job's message: persistent, typed, traceable in the console,
    and with the current trace context in its headers when OpenTelemetry is installed
    (`tracing.py`).

    Built directly, below aio-pika: an `aio_pika.Message` costs about 20 µs to make,
    a tenth of a confirmed publish (see docs/performance.md).
    """
    stamp = message.enqueued_at
    headers: Any = tracing.inject()  # a FieldTable of str, or None
    return spec.Basic.Properties(
        headers=headers,
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        message_id=message.id,
        app_id=partition,
        message_type=message.job,
        timestamp=datetime.datetime.fromtimestamp(stamp, datetime.UTC) if stamp else None,
    )


def kept_properties(p: spec.Basic.Properties) -> dict[str, Any]:
    """What a republish (retry, bury, move) keeps of a message's properties, as keyword
    arguments of `aio_pika.Message`."""
    return {
        "headers": dict(p.headers or {}),
        "content_type": p.content_type,
        "message_id": p.message_id,
        "app_id": p.app_id,
        "type": p.message_type,
        "timestamp": p.timestamp,
    }


def properties_of(message: AbstractIncomingMessage) -> dict[str, Any]:
    """The properties of a delivered message that a republish keeps."""
    return kept_properties(message.properties)


@dataclass(frozen=True)
class Peeked:
    """A message read from a queue: its body and the properties we keep."""

    body: bytes
    properties: dict[str, Any]

    @property
    def headers(self) -> dict[str, Any]:
        """The message headers (never None)."""
        headers: dict[str, Any] = self.properties.get("headers") or {}
        return headers


@dataclass(frozen=True)
class Moved:
    """Where and how `Broker.move` republishes a message."""

    routing_key: str
    body: bytes
    properties: dict[str, Any]


def peeked(message: AbstractIncomingMessage) -> Peeked:
    """A message got from a queue, as `Peeked`."""
    return Peeked(bytes(message.body), properties_of(message))
