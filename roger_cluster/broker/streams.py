"""RabbitMQ streams over AMQP 0-9-1: declare one, append to it, read it from an offset.

The job history (`history.py`) lives in a stream: an append-only log that
RabbitMQ trims by age and size, read by any number of readers without being
consumed. RabbitMQ 3.9+ serves streams over plain AMQP 0-9-1 (no stream
plugin): declared with `x-queue-type: stream`, published to like any queue
(with confirms), read by a consumer with a prefetch, manual acks and the
argument `x-stream-offset` ("first", a timestamp or an offset).

A stream has no end a consumer could see: a reader never knows it read the
last message. So `read_stream` first appends a small mark of its own and
reads until it meets it: everything written before the read began is read,
exactly, with no idle timeout to guess. The marks are a few dozen bytes
each; readers of the stream skip them (`MARK_HEADER`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiormq
from aio_pika.abc import AbstractIncomingMessage

from ..errors import BrokerError
from .connection import CONNECTION_ERRORS
from .reading import Reading

_READ_ERRORS: tuple[type[BaseException], ...] = (aiormq.exceptions.AMQPError, *CONNECTION_ERRORS)
# The header of a reader's mark; its value is the reader's own id.
MARK_HEADER = "x-roger-read-mark"
# Messages a stream reader may hold unacked (a stream consumer needs a prefetch).
READ_PREFETCH = 500
# A read gives up when its own mark did not come back within this long.
READ_TIMEOUT = 60.0


@dataclass(frozen=True)
class StreamSettings:
    """How long and how big a stream may grow before RabbitMQ drops its oldest segments."""

    max_age: int  # seconds
    max_bytes: int
    segment_bytes: int

    def arguments(self) -> dict[str, Any]:
        """The queue arguments of the stream."""
        return {
            "x-queue-type": "stream",
            "x-max-age": f"{self.max_age}s",
            "x-max-length-bytes": self.max_bytes,
            "x-stream-max-segment-size-bytes": self.segment_bytes,
        }


@dataclass(frozen=True)
class StreamEntry:
    """One message read from a stream: its offset, its body and its headers."""

    offset: int
    body: bytes
    headers: dict[str, Any]


class Streams(Reading):
    """Declaring, appending to and reading RabbitMQ streams."""

    async def declare_stream(self, name: str, settings: StreamSettings) -> None:
        """Declare the stream `name` (idempotent). BrokerError if it exists with other
        settings: the caller may go on appending to it as it is."""
        await self._declare({name: settings.arguments()})

    async def append(self, name: str, body: bytes, headers: dict[str, Any] | None = None) -> None:
        """Append one message to the stream `name`, confirmed; UnroutableJob if it does not exist."""
        await self.publish_bytes(body, name, {"headers": headers or {}})

    async def stream_exists(self, name: str) -> bool:
        """Whether the stream (or any queue) `name` exists."""
        return await self.stats(name) is not None

    async def read_stream(self, name: str, since: float | None) -> AsyncIterator[StreamEntry]:
        """Every message of stream `name` written before this call, from the first one
        at or after `since` (Unix time; None: from the first kept). RabbitMQ starts a
        timestamp read at the chunk holding that time, so a few earlier messages may
        come first: the caller filters by its own times. Nothing is consumed."""
        mark = uuid.uuid4().hex
        await self.append(name, b"", {MARK_HEADER: mark})
        channel = await self.channel(prefetch=READ_PREFETCH)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        try:
            queue = await channel.get_queue(name, ensure=False)
            offset: Any = "first" if since is None else datetime.datetime.fromtimestamp(since, datetime.UTC)
            await queue.consume(inbox.put, no_ack=False, arguments={"x-stream-offset": offset})
            while True:
                message = await asyncio.wait_for(inbox.get(), READ_TIMEOUT)
                await message.ack()
                headers = dict(message.headers or {})
                if headers.get(MARK_HEADER) == mark:
                    return
                if MARK_HEADER in headers:
                    continue  # another reader's mark
                offset_header = headers.get("x-stream-offset")
                yield StreamEntry(
                    int(offset_header) if isinstance(offset_header, int) else -1, message.body, headers
                )
        except TimeoutError as e:
            raise BrokerError(
                f"reading stream {name}: our read mark did not come back in {READ_TIMEOUT:g}s"
            ) from e
        except _READ_ERRORS as e:
            raise BrokerError(f"reading stream {name}: {e}") from e
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await channel.close()
