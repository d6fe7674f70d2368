"""Consuming: one channel that consumes, and a queue kept consumed for a node's lifetime.

Everything above the broker package that takes messages from RabbitMQ goes
through a `Consumer`: the partition queues' consumers, the execution-key
chains (basic.get), the control server and client, the release queue. It owns
one channel: prefetch, consume and cancel (again with the same tag), basic.get,
a publish for replies, and two hooks for the ways a consumer is lost: RabbitMQ
cancels it (basic.cancel from the server: its queue was deleted, by hand or
by a node failure of a replicated queue; the channel stays open, so its
unacked deliveries can still be settled on it) and its channel closes.

Deliveries stay below aio-pika, as aiormq hands them over: a consume callback
gets aiormq's message and makes it a `Delivery` itself (`Delivery.from_raw`).
Converting it here would put one more coroutine on the path of every job.

A `Consumer` is opened once; after its channel closed, its owner makes a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aio_pika
import aiormq.abc
from aio_pika.abc import AbstractChannel
from pamqp import commands as spec

from ..errors import BrokerError, UnroutableJob
from .connection import AMQP_ERRORS, Connection
from .delivery import Delivery, RawDelivery
from .topology import REDECLARE_DELAY, Topology

log = logging.getLogger(__name__)

OnDelivery = Callable[[RawDelivery], Coroutine[Any, Any, None]]
# aio-pika's default for basic.get: a broker that does not answer is a failed get.
GET_TIMEOUT = 5.0


class Consumer:
    """One channel of the broker's connection, for consuming (see the module docstring)."""

    def __init__(self, broker: Connection, what: str) -> None:
        self.broker = broker
        self.what = what  # for error messages: "queue myapp-default"
        self._channel: AbstractChannel | None = None
        self._underlay: aiormq.abc.AbstractChannel | None = None
        self._closing = False
        self._on_cancelled: Callable[[str], None] | None = None
        self._on_closed: Callable[[BaseException | None], None] | None = None

    @property
    def is_open(self) -> bool:
        """Whether the channel is open (consuming or not)."""
        return self._channel is not None and not self._channel.is_closed

    def on_cancelled(self, callback: Callable[[str], None]) -> None:
        """Call `callback(consumer_tag)` when RabbitMQ cancels a consumer of this channel.

        It runs in the channel's frame reader, so it must not wait on the
        channel: it should only record the loss and wake whoever converges.
        """
        self._on_cancelled = callback

    def on_closed(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call `callback(error)` when the channel closes for any reason but our own `close()`
        (`error`: why, if RabbitMQ said; its text is all there is to read from it)."""
        self._on_closed = callback

    async def open(self, prefetch: int | None = None) -> None:
        """Open the channel, with `prefetch` if given."""
        assert self._channel is None, "a Consumer is opened once"
        channel = await self.broker.channel(prefetch)
        try:
            underlay = await channel.get_underlay_channel()
        except AMQP_ERRORS as e:
            with contextlib.suppress(*AMQP_ERRORS):
                await channel.close()
            raise self._error("opening a channel for", e) from e
        underlay.on_consumer_cancel_callbacks.add(self._cancel_frame)
        channel.close_callbacks.add(self._channel_closed)
        self._channel, self._underlay = channel, underlay

    def _cancel_frame(self, frame: spec.Basic.Cancel) -> None:
        if frame.consumer_tag is not None and self._on_cancelled is not None and not self._closing:
            self._on_cancelled(frame.consumer_tag)

    def _channel_closed(self, _: object, error: BaseException | None = None) -> None:
        if not self._closing and self._on_closed is not None:
            self._on_closed(error)

    def _error(self, doing: str, error: BaseException) -> BrokerError:
        if isinstance(error, aio_pika.exceptions.PublishError):
            return UnroutableJob(f"{doing} {self.what}: no queue takes it")
        return BrokerError(f"{doing} {self.what}: {error}")

    def _open_underlay(self) -> aiormq.abc.AbstractChannel:
        if self._underlay is None or not self.is_open:
            raise BrokerError(f"the channel of {self.what} is closed")
        return self._underlay

    async def declare(
        self,
        name: str,
        arguments: dict[str, Any],
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
    ) -> None:
        """Declare queue `name` on this channel (a channel error closes this channel only)."""
        assert self._channel is not None
        try:
            await self._channel.declare_queue(
                name, durable=durable, exclusive=exclusive, auto_delete=auto_delete, arguments=arguments
            )
        except AMQP_ERRORS as e:
            raise self._error("declaring", e) from e

    async def consume(
        self,
        queue: str,
        on_delivery: OnDelivery,
        no_ack: bool = False,
        arguments: dict[str, Any] | None = None,
        tag: str | None = None,
    ) -> str:
        """Consume `queue` (with consumer tag `tag`, if given); returns the consumer tag.

        `on_delivery` gets each delivery as aiormq made it, in a task of its
        own (aiormq's); it makes it a `Delivery` with `Delivery.from_raw`.
        """
        underlay = self._open_underlay()
        try:
            ok = await underlay.basic_consume(
                queue, on_delivery, no_ack=no_ack, arguments=arguments, consumer_tag=tag
            )
        except AMQP_ERRORS as e:
            raise self._error("consuming", e) from e
        assert ok.consumer_tag is not None
        return ok.consumer_tag

    async def cancel(self, tag: str) -> None:
        """Stop consumer `tag`; its unacked deliveries stay on the channel, to be settled."""
        if not self.is_open:
            return
        try:
            await self._open_underlay().basic_cancel(tag)
        except AMQP_ERRORS as e:
            raise self._error("cancelling the consumer of", e) from e

    async def set_prefetch(self, prefetch: int) -> None:
        """The prefetch of the consumers started from now on."""
        assert self._channel is not None
        try:
            await self._channel.set_qos(prefetch_count=prefetch)
        except AMQP_ERRORS as e:
            raise self._error("setting the prefetch of", e) from e

    async def get(self, queue: str, alone: bool = False) -> Delivery | None:
        """One message of `queue` (basic.get, unacked), or None if it is empty.

        `alone`: the caller takes one message at a time and settles it before
        the next, so `Delivery.give_back` may close the channel (see there).
        """
        underlay = self._open_underlay()
        try:
            raw = await underlay.basic_get(queue, no_ack=False, timeout=GET_TIMEOUT)
        except AMQP_ERRORS as e:
            raise self._error("getting a message of", e) from e
        if isinstance(raw.delivery, spec.Basic.GetEmpty):
            return None
        return Delivery.from_raw(raw, alone)

    async def publish(
        self, body: bytes, routing_key: str, properties: dict[str, Any], mandatory: bool = True
    ) -> None:
        """Publish on this channel (direct reply-to wants a request sent from the channel
        that consumes its replies) and wait for the confirm; `properties` as keyword
        arguments of `aio_pika.Message`. UnroutableJob if `mandatory` and no queue took it."""
        assert self._channel is not None
        message = aio_pika.Message(body, **properties)
        try:
            await self._channel.default_exchange.publish(
                message, routing_key=routing_key, mandatory=mandatory
            )
        except AMQP_ERRORS as e:
            raise self._error(f"publishing to {routing_key} from", e) from e

    async def close(self) -> None:
        """Close the channel (no hook called); unacked deliveries go back to their queues."""
        self._closing = True
        channel = self._channel
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception as e:  # closing a broken channel is best effort
                log.debug("closing the channel of %s: %s", self.what, e)


class KeptConsumer:
    """A queue consumed for as long as its owner runs: a node's control queue, the release queue.

    `start()` is idempotent and replayable: the owner calls it whenever it
    converges (after a reconnect, a lost channel). A lost channel means a new
    one; a consumer RabbitMQ cancelled (the queue deleted) is consumed again
    on the same channel once the queue is declared again and RabbitMQ is done
    deleting it (`REDECLARE_DELAY`), so deliveries under way are still settled
    where they came from. `on_lost` hears of both, to converge.
    """

    def __init__(
        self,
        broker: Topology,
        name: str,
        on_delivery: OnDelivery,
        arguments: dict[str, Any],
        prefetch: int | None = None,
        no_ack: bool = False,
        exclusive: bool = False,
    ) -> None:
        """`exclusive`: the queue lives with this connection (exclusive, auto-delete, not
        durable), as a node's control queue; else it is durable and shared."""
        self.broker = broker
        self.name = name
        self._on_delivery = on_delivery
        self._arguments = arguments
        self._prefetch = prefetch
        self._no_ack = no_ack
        self._exclusive = exclusive
        self.consumer: Consumer | None = None
        self._on_lost: Callable[[], None] | None = None
        self._cancelled_at: float | None = None  # when RabbitMQ cancelled our consumer

    @property
    def is_alive(self) -> bool:
        """Whether the queue is being consumed."""
        return self._cancelled_at is None and self.consumer is not None and self.consumer.is_open

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the channel closes for any reason but our own close(),
        and when RabbitMQ cancels the consumer."""
        self._on_lost = callback

    async def start(self) -> None:
        """Declare the queue and consume it, unless already doing so. Raises BrokerError."""
        if self.is_alive:
            return
        if self.consumer is not None and self.consumer.is_open and self._cancelled_at is not None:
            await asyncio.sleep(max(0.0, self._cancelled_at + REDECLARE_DELAY - time.monotonic()))
            await self._consume(self.consumer, check=True)
            self._cancelled_at = None
            return
        await self.close()
        consumer = Consumer(self.broker, f"queue {self.name}")
        consumer.on_cancelled(lambda _: self._cancelled(consumer))
        consumer.on_closed(lambda _: self._closed(consumer))
        await consumer.open(self._prefetch)
        try:
            await self._consume(consumer)
            if not consumer.is_open:
                raise BrokerError(f"the channel of {consumer.what} closed as it started")
        except BrokerError:
            await consumer.close()
            raise
        self.consumer, self._cancelled_at = consumer, None

    async def _consume(self, consumer: Consumer, check: bool = False) -> None:
        exclusive = self._exclusive
        await consumer.declare(
            self.name, self._arguments, durable=not exclusive, exclusive=exclusive, auto_delete=exclusive
        )
        if check:
            await self.broker.check_consumable(self.name)
        await consumer.consume(self.name, self._on_delivery, no_ack=self._no_ack)

    def _cancelled(self, consumer: Consumer) -> None:
        if consumer is self.consumer and self._cancelled_at is None:
            log.warning(
                "RabbitMQ cancelled the consumer of %s (the queue was deleted?); declaring it again",
                self.name,
            )
            self._cancelled_at = time.monotonic()
            if self._on_lost is not None:
                self._on_lost()

    def _closed(self, consumer: Consumer) -> None:
        if consumer is self.consumer:
            self.consumer = None
            if self._on_lost is not None:
                self._on_lost()

    async def close(self) -> None:
        """Stop consuming; unacked deliveries go back to the queue (an exclusive one goes)."""
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            with contextlib.suppress(BrokerError):
                await consumer.close()
