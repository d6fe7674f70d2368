"""AMQP topology and publishing: the only module (with the runtime consumers it
hands channels to) that talks to aio-pika.

Declares are idempotent, so they are replayed freely after a reconnect or on
every partition-map change. Every publish is mandatory and waits for the
publisher confirm: a job is only reported enqueued once RabbitMQ has it, and a
job that no queue would take is an error for the caller, never a silent drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, DeliveryMode
from aio_pika.connection import make_url
from pamqp import commands as spec

from .codec import CONTENT_TYPE, JobMessage, encode
from .config import AmqpConfig, TlsFiles
from .errors import BrokerConnectionError, BrokerError, UnroutableJob
from .names import buried_queue_name, exec_waiting_queue_name, queue_name, retry_queue_name

log = logging.getLogger(__name__)

T = TypeVar("T")

# Progress of a long queue operation: (messages handled so far, messages ready when it began).
OnCount = Callable[[int, int], None]

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPConnectionError,
    aiormq.exceptions.ConnectionClosed,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)

WAITING_PUBLISH_ATTEMPTS = 5
# Declares go over a few channels kept open: a declare on a channel of its own
# costs the channel's open, confirm.select and close round trips too (2.4 ms vs
# 0.6 ms), and a node converging hundreds of new queues at once no longer holds
# a transient channel per queue. A few, not one: RabbitMQ runs the declares of
# one channel one after another, and creating a quorum queue takes milliseconds.
DECLARE_CHANNELS = 4
# RabbitMQ's default channel_max per connection. Opening one more channel than the
# broker allows makes it close the whole connection (530 NOT_ALLOWED), taking every
# consumer with it, so we refuse before that. aiormq does not keep the negotiated
# value; a broker configured lower still closes the connection.
CHANNEL_MAX = 2047

PERSISTENT = int(DeliveryMode.PERSISTENT)

# aiormq raises RuntimeError("<Connection ...> closed") for a channel on a dropped connection.
_CHANNEL_ERRORS: tuple[type[BaseException], ...] = (*_CONNECTION_ERRORS, RuntimeError)


@dataclass(frozen=True)
class QueueStats:
    """What a passive declare tells about a queue."""

    name: str
    ready: int
    consumers: int


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
    """The properties of a job's message: persistent, typed, traceable in the console.

    Built directly, below aio-pika: an `aio_pika.Message` costs about 20 µs to make,
    a tenth of a confirmed publish (see docs/performance.md).
    """
    stamp = message.enqueued_at
    return spec.Basic.Properties(
        content_type=CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        message_id=message.id,
        app_id=partition,
        message_type=message.job,
        timestamp=datetime.datetime.fromtimestamp(stamp, datetime.UTC) if stamp else None,
    )


class Broker:
    """One AMQP connection with a confirming publish channel."""

    def __init__(self, config: AmqpConfig, connection_name: str | None = None) -> None:
        self.config = config
        # Shown by the RabbitMQ console (a node's connection carries its node name).
        self.connection_name = connection_name
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._declare_channels: list[AbstractChannel | None] = [None] * DECLARE_CHANNELS
        self._next_declare = 0
        self._channel_lock = asyncio.Lock()
        self._declared: set[str] = set()  # waiting queues declared on this connection
        self._url_index = -1  # the broker of the current connection, among config.urls

    def _forget_channels(self) -> None:
        self._publish_channel = None
        self._declare_channels = [None] * DECLARE_CHANNELS

    def _client_properties(self) -> dict[str, Any]:
        return {"connection_name": self.connection_name} if self.connection_name else {}

    def _unreachable(self, error: BaseException) -> BrokerConnectionError:
        return BrokerConnectionError(f"cannot reach RabbitMQ at {self.config.describe()}: {error}")

    async def connect(self) -> None:
        """Open the connection (plain, not robust: reconnecting is the owner's job)."""
        await self.close()  # a connection the broker dropped is closed too, not left to the GC
        self._declared.clear()
        urls = self.config.urls
        error: BaseException | None = None
        # Several brokers (a RabbitMQ cluster): start after the one we had, so a
        # broker that went down is tried last.
        for step in range(1, len(urls) + 1):
            index = (self._url_index + step) % len(urls)
            # Made here rather than by aio_pika.connect, so that a failed attempt is closed:
            # an unclosed aio-pika connection schedules its close from __del__, which
            # outside a running loop leaves a "never awaited" coroutine behind.
            connection = aio_pika.Connection(
                make_url(urls[index]),
                client_properties=self._client_properties(),
                ssl_context=self._ssl_context(urls[index]),
            )
            try:
                await asyncio.wait_for(connection.connect(), self.config.connect_timeout)
            except _CONNECTION_ERRORS as e:
                error = e
                with contextlib.suppress(Exception):
                    await connection.close()
                continue
            self.connection = connection
            self._url_index = index
            if len(urls) > 1:
                log.info("connected to RabbitMQ at %s", self.config.describe(urls[index]))
            return
        assert error is not None
        raise self._unreachable(error) from error

    def _ssl_context(self, url: str) -> ssl.SSLContext | None:
        """For amqps:// URLs: verify the broker against the configured CA (or the
        system's), and present a client certificate if one is configured."""
        if not url.startswith("amqps://"):
            return None
        tls = self.config.tls or TlsFiles()
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        return context

    @property
    def is_connected(self) -> bool:
        """Whether the connection is open (aio-pika's `is_closed` stays False when the broker drops it)."""
        connection = self.connection
        return connection is not None and not connection.is_closed and connection.connected.is_set()

    async def close(self) -> None:
        """Close the connection; unacked deliveries go back to their queues."""
        connection, self.connection = self.connection, None
        self._forget_channels()
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except _CONNECTION_ERRORS as e:
                log.debug("closing AMQP connection: %s", e)

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def channel(self, prefetch: int | None = None) -> AbstractChannel:
        """A new channel on the connection, with `prefetch` if given."""
        if self.connection is None or not self.is_connected:
            raise BrokerConnectionError(f"not connected to RabbitMQ at {self.config.describe()}")
        if self.open_channels() >= CHANNEL_MAX:
            raise BrokerError(
                f"{self.open_channels()} channels are open on this connection, RabbitMQ's limit"
                f" (channel_max {CHANNEL_MAX}): one more would close the connection. A node consumes"
                " each queue on a channel of its own: limit partitions to some of the nodes"
                f" (labels, nodes) so that no node consumes more than about"
                f" {CHANNEL_MAX - DECLARE_CHANNELS - 3} queues"
            )
        try:
            channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
            if prefetch is not None:
                await channel.set_qos(prefetch_count=prefetch)
        except _CHANNEL_ERRORS as e:
            raise self._unreachable(e) from e
        return channel

    def open_channels(self) -> int:
        """Channels open (or opening) on the connection."""
        connection = self.connection
        transport = connection.transport if connection is not None else None
        return 0 if transport is None else len(transport.connection.channels)

    @contextlib.asynccontextmanager
    async def _short_channel(self) -> AsyncIterator[AbstractChannel]:
        """A channel for one operation, closed after it (a channel error only ends it)."""
        channel = await self.channel()
        try:
            yield channel
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _guard(self, action: Callable[[], Awaitable[T]], what: str) -> T:
        try:
            return await action()
        except aio_pika.exceptions.PublishError as e:
            raise UnroutableJob(f"{what}: no queue takes it (is the partition started?)") from e
        except (aiormq.exceptions.ChannelClosed, aio_pika.exceptions.DeliveryError) as e:
            self._publish_channel = None
            raise BrokerError(f"{what}: {e}") from e
        except _CONNECTION_ERRORS as e:
            self._publish_channel = None
            raise self._unreachable(e) from e

    async def _publisher(self) -> AbstractChannel:
        channel = self._publish_channel
        if channel is None or channel.is_closed:
            async with self._channel_lock:
                channel = self._publish_channel
                if channel is None or channel.is_closed:
                    channel = self._publish_channel = await self.channel()
        return channel

    async def declare(self, partition: str, queue: str) -> None:
        """Declare the queue and its buried queue, durable, of the configured type."""
        arguments: dict[str, Any] = {"x-queue-type": self.config.queue_type}
        await self._declare(
            {
                queue_name(partition, queue): self.main_arguments(partition, queue),
                buried_queue_name(partition, queue): arguments,
            }
        )

    def main_arguments(self, partition: str, queue: str) -> dict[str, Any]:
        """A partition queue: with quorum queues, a poison message (one that keeps
        killing its consumer) is dead-lettered to the buried queue after
        `delivery_limit` deliveries instead of crashing node after node forever."""
        arguments: dict[str, Any] = {"x-queue-type": self.config.queue_type}
        if self.config.queue_type == "quorum" and self.config.delivery_limit:
            arguments |= {
                "x-delivery-limit": self.config.delivery_limit,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": buried_queue_name(partition, queue),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        return arguments

    def retry_arguments(self, partition: str, queue: str, delay: int) -> dict[str, Any]:
        """A retry queue: holds messages `delay` s, then dead-letters them to the main queue.

        It deletes itself when unused for twice its delay plus a minute; every
        publish to it declares it again first, which resets that clock, so it
        can only go once its last message has gone back to the main queue.
        """
        arguments: dict[str, Any] = {
            "x-queue-type": self.config.queue_type,
            "x-message-ttl": delay * 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue_name(partition, queue),
            "x-expires": (2 * delay + 60) * 1000,
        }
        if self.config.queue_type == "quorum":
            # RabbitMQ's default dead-lettering from quorum queues is at-most-once.
            arguments |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        return arguments

    async def _declarer(self) -> AbstractChannel:
        """One of the kept declare channels, in turn; opened again once closed."""
        index = self._next_declare
        self._next_declare = (index + 1) % DECLARE_CHANNELS
        channel = self._declare_channels[index]
        if channel is None or channel.is_closed:
            async with self._channel_lock:
                channel = self._declare_channels[index]
                if channel is None or channel.is_closed:
                    channel = self._declare_channels[index] = await self.channel()
        return channel

    async def _declare(self, queues: dict[str, dict[str, Any]]) -> None:
        async def kept() -> None:
            channel = await self._declarer()
            for name, arguments in queues.items():
                await channel.declare_queue(name, durable=True, arguments=arguments)

        async def alone() -> None:
            async with self._short_channel() as channel:
                for name, arguments in queues.items():
                    await channel.declare_queue(name, durable=True, arguments=arguments)

        first = next(iter(queues))
        try:
            try:
                await kept()
            except (aiormq.exceptions.ChannelClosed, RuntimeError):
                # A channel error (PRECONDITION_FAILED: a queue exists with other
                # arguments) closes the kept channel for every declare waiting on
                # it, whichever queue it was about: each finds out on its own channel.
                await self._guard(alone, f"declaring queue {first}")
            except _CONNECTION_ERRORS as e:
                raise self._unreachable(e) from e
        except BrokerError as e:
            if "PRECONDITION_FAILED" in str(e.__cause__):
                raise BrokerError(
                    f"queue {first} already exists with other settings than"
                    f" durable {self.config.queue_type}: {e.__cause__}"
                ) from e
            raise

    async def publish_retry(self, message: JobMessage, partition: str, delay: int) -> None:
        """Publish a job to the retry queue of `delay` and wait for the confirm."""
        name = retry_queue_name(partition, message.queue, delay)
        await self._declare({name: self.retry_arguments(partition, message.queue, delay)})
        body = encode(message, self.config.max_payload_bytes)
        await self._send_job(body, amqp_properties(message, partition), name, f"job {message.id}")

    async def publish(self, message: JobMessage, partition: str, routing_key: str | None = None) -> None:
        """Publish one job to its partition queue (or `routing_key`) and wait for the confirm."""
        body = encode(message, self.config.max_payload_bytes)
        target = routing_key or queue_name(partition, message.queue)
        await self._send_job(body, amqp_properties(message, partition), target, f"job {message.id}")

    async def declare_waiting(self, partition: str, key: str, again: bool = False) -> str:
        """Declare an execution key's waiting queue (once per connection, unless `again`:
        it may have been deleted by hand since); returns its name."""
        name = exec_waiting_queue_name(partition, key)
        if again or name not in self._declared:
            await self._declare({name: {"x-queue-type": self.config.queue_type}})
            self._declared.add(name)
        return name

    async def publish_waiting(self, message: JobMessage, partition: str) -> None:
        """Publish a job with an execution key to its key's waiting queue (declared on demand)."""
        assert message.execution_key is not None
        name = exec_waiting_queue_name(partition, message.execution_key)
        for attempt in range(1, WAITING_PUBLISH_ATTEMPTS + 1):
            await self.declare_waiting(partition, message.execution_key)
            try:
                await self.publish(message, partition, name)
                return
            except UnroutableJob:  # deleted by an operator: declare it again
                self._declared.discard(name)
                if attempt == WAITING_PUBLISH_ATTEMPTS:
                    raise
            except BrokerError:
                # A quorum queue declared by several clients at once can nack the
                # first publishes; a nacked message is not queued, so send it again.
                if attempt == WAITING_PUBLISH_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * attempt)

    async def publish_bytes(self, body: bytes, routing_key: str, properties: dict[str, Any]) -> None:
        """Publish a body as it came (a message we could not run) with its properties."""
        amqp = aio_pika.Message(body, **{**properties, "delivery_mode": DeliveryMode.PERSISTENT})
        await self._send(amqp, routing_key, "message")

    async def bury(self, body: bytes, partition: str, queue: str, properties: dict[str, Any]) -> None:
        """Publish a message to the buried queue of `partition`-`queue`, declaring the
        partition's queues again if it was deleted (nothing consumes a buried queue, so
        nothing else notices)."""
        name = buried_queue_name(partition, queue)
        try:
            await self.publish_bytes(body, name, properties)
        except UnroutableJob:
            log.warning("buried queue %s was deleted; declaring it again", name)
            await self.declare(partition, queue)
            await self.publish_bytes(body, name, properties)

    async def _send(self, amqp: aio_pika.Message, routing_key: str, what: str) -> None:
        async def run() -> None:
            channel = await self._publisher()
            await channel.default_exchange.publish(amqp, routing_key=routing_key, mandatory=True)

        await self._guard(run, f"publishing {what} to {routing_key}")

    async def _send_job(
        self, body: bytes, properties: spec.Basic.Properties, routing_key: str, what: str
    ) -> None:
        """`_send` for a job's own message, straight to aiormq (the hot path of every enqueue)."""

        async def run() -> None:
            channel = await (await self._publisher()).get_underlay_channel()
            await channel.basic_publish(body, routing_key=routing_key, properties=properties, mandatory=True)

        await self._guard(run, f"publishing {what} to {routing_key}")

    async def stats(self, name: str) -> QueueStats | None:
        """Ready messages and consumers of a queue, or None if it does not exist."""

        async def run() -> QueueStats | None:
            async with self._short_channel() as channel:
                try:
                    declared = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    return None  # the channel is closed by the 404; nothing to release
                result = declared.declaration_result
                return QueueStats(name, result.message_count or 0, result.consumer_count or 0)

        return await self._guard(run, f"reading queue {name}")

    async def check_consumable(self, name: str) -> None:
        """Raise BrokerError unless queue `name` answers: declared again after a deletion,
        a quorum queue still being deleted takes the declare, but a consume on it makes
        RabbitMQ close the whole connection (see REDECLARE_DELAY)."""
        if await self.stats(name) is None:
            raise BrokerError(f"queue {name} is still being deleted")

    async def peek(self, name: str, limit: int) -> list[Peeked]:
        """Up to `limit` messages of a queue, read without taking them.

        Each is fetched unacked and all are released together when the channel
        closes (or the connection drops), so nothing is lost or consumed. Where
        they go back is RabbitMQ's requeue: a classic queue puts them back in
        place; a quorum queue (seen on RabbitMQ 3.10) puts them at the
        back, behind the messages that were not peeked. They come back flagged
        redelivered.
        """

        async def run() -> list[Peeked]:
            found: list[Peeked] = []
            async with self._short_channel() as channel:
                queue = await channel.get_queue(name, ensure=True)
                while len(found) < limit and (message := await queue.get(fail=False)) is not None:
                    found.append(_peeked(message))
            return found

        return await self._guard(run, f"reading queue {name}")

    async def move(
        self,
        source: str,
        choose: Callable[[Peeked], Awaitable[Moved | None]],
        on_progress: OnCount | None = None,
    ) -> int:
        """Move messages out of `source` where `choose` says; returns how many moved.

        A moved message is published (and confirmed) before it is acked in
        `source`, so a failure in between can leave a copy, never lose one.
        `on_progress` hears how many messages were looked at, of how many.
        """

        async def take(peeked: Peeked) -> bool:
            target = await choose(peeked)
            if target is not None:
                await self.publish_bytes(target.body, target.routing_key, target.properties)
            return target is not None

        return await self._take_each(source, take, f"moving messages out of {source}", on_progress)

    async def drop_all(
        self, name: str, each: Callable[[Peeked], Awaitable[None]], on_progress: OnCount | None = None
    ) -> int:
        """Take every ready message of a queue, call `each` on it, then ack it; returns how many.

        Slower than `purge`, but every message is seen (to release its queue key)
        before it goes; if `each` fails, the message stays in the queue.
        """

        async def take(peeked: Peeked) -> bool:
            await each(peeked)
            return True

        return await self._take_each(name, take, f"purging {name}", on_progress)

    async def _take_each(
        self,
        name: str,
        take: Callable[[Peeked], Awaitable[bool]],
        what: str,
        on_progress: OnCount | None = None,
    ) -> int:
        """Get every ready message; ack those `take` returns True for, release the rest.

        `on_progress(seen, total)` is called after each message; `total` is the
        ready count when it began (jobs enqueued meanwhile can make `seen` pass it).
        """

        async def run() -> int:
            taken = seen = 0
            async with self._short_channel() as channel:
                queue = await channel.get_queue(name, ensure=True)
                total = int(queue.declaration_result.message_count or 0)
                while (message := await queue.get(fail=False)) is not None:
                    if await take(_peeked(message)):
                        await message.ack()
                        taken += 1
                    seen += 1
                    if on_progress is not None:
                        on_progress(seen, total)
            return taken

        return await self._guard(run, what)

    async def delete_queue(self, name: str) -> None:
        """Delete a queue and whatever it holds (quorum queues cannot be deleted "if empty":
        the caller makes sure nothing can be published into it meanwhile)."""
        self._declared.discard(name)

        async def run() -> None:
            async with self._short_channel() as channel:
                await channel.queue_delete(name, if_unused=False, if_empty=False)

        await self._guard(run, f"deleting queue {name}")


# Seconds between RabbitMQ cancelling a consumer (its queue deleted) and declaring the
# queue again. A quorum queue being deleted still takes declares for a while after the
# cancel (over a second, seen on RabbitMQ 3.10), and a basic.consume on it makes
# RabbitMQ close the whole connection (INTERNAL_ERROR): `check_consumable` tells when
# it is gone; this pause spares most of those checks.
REDECLARE_DELAY = 0.5


async def on_consumer_cancelled(channel: AbstractChannel, callback: Callable[[str], None]) -> None:
    """Call `callback(consumer_tag)` whenever RabbitMQ cancels a consumer of `channel`.

    RabbitMQ does that (basic.cancel from the server) when the consumed queue
    is deleted, by hand or by a node failure of a replicated queue. The
    channel stays open: its unacked deliveries can still be settled on it, and
    the owner may declare the queue again and consume it on the same channel.
    The callback runs in the channel's frame reader, so it must not wait on the
    channel: it should only record the loss and wake whoever converges.
    """
    underlay = await channel.get_underlay_channel()

    def cancelled(frame: spec.Basic.Cancel) -> None:
        if frame.consumer_tag is not None:
            callback(frame.consumer_tag)

    underlay.on_consumer_cancel_callbacks.add(cancelled)


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


def properties_of(message: aio_pika.abc.AbstractIncomingMessage) -> dict[str, Any]:
    """The properties of a delivered message that a republish keeps."""
    return kept_properties(message.properties)


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


def _peeked(message: aio_pika.abc.AbstractIncomingMessage) -> Peeked:
    return Peeked(bytes(message.body), properties_of(message))
