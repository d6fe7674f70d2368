"""The AMQP connection and its channels: opening, counting, closing, watching.

Plain, not robust: when RabbitMQ drops the connection nothing here reconnects
or restores consumers; the node converges again (`on_connection_lost`), the
same code path as after a partition-map change. Library exceptions are turned
into `BrokerError` / `BrokerConnectionError` here and in the modules beside
this one, so nothing above the broker package catches an aio-pika or aiormq
type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.connection import make_url

from ..config import AmqpConfig, TlsFiles
from ..errors import BrokerConnectionError, BrokerError, UnroutableJob
from .spread import attempt_order, broker_order

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPConnectionError,
    aiormq.exceptions.ConnectionClosed,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)
# aiormq raises RuntimeError("<Connection ...> closed") for a channel on a dropped connection.
CHANNEL_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, RuntimeError)
# Whatever an operation on a channel may raise from the libraries.
AMQP_ERRORS: tuple[type[BaseException], ...] = (aiormq.exceptions.AMQPError, *CHANNEL_ERRORS)

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


class Connection:
    """One AMQP connection, with a confirming publish channel and a few kept declare channels."""

    def __init__(self, config: AmqpConfig, connection_name: str | None = None) -> None:
        self.config = config
        # Shown by the RabbitMQ console (a node's connection carries its node name).
        self.connection_name = connection_name
        # Which broker of a cluster to try first, then next (`spread.py`): ranked by the
        # node's name; a client, which has no name, by a random key of its own and its pid.
        self._client_key = secrets.token_hex(8)
        self.connection: AbstractConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._declare_channels: list[AbstractChannel | None] = [None] * DECLARE_CHANNELS
        self._next_declare = 0
        self._channel_lock = asyncio.Lock()
        self._url_index: int | None = None  # the broker of the current connection, among config.urls
        self._pid = os.getpid()  # the process `_url_index` is about
        self._on_lost: list[Callable[[BaseException | None], None]] = []

    @property
    def broker_order(self) -> tuple[int, ...]:
        """The indices of `config.urls` in the order this process tries them (`spread.py`).

        A node's follows its name. A client's is drawn per object and per process, so the
        children of a fork (web workers preloaded by gunicorn) spread too."""
        key = self.connection_name or f"{self._client_key}:{os.getpid()}"
        return broker_order([self.config.describe(u) for u in self.config.urls], key)

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
        urls = self.config.urls
        error: BaseException | None = None
        # Several brokers (a RabbitMQ cluster): in this process's order, the one we
        # had (it just failed us) last; a forked child's parent had that one, not it.
        order = self.broker_order
        if self._pid != os.getpid():
            self._pid, self._url_index = os.getpid(), None
        for index in attempt_order(order, self._url_index):
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
            except CONNECTION_ERRORS as e:
                error = e
                with contextlib.suppress(Exception):
                    await connection.close()
                continue
            self.connection = connection
            self._url_index = index
            connection.close_callbacks.add(self._connection_closed)
            if len(urls) > 1:
                where, rank = self.config.describe(urls[index]), order.index(index) + 1
                log.info("connected to RabbitMQ at %s (choice %d of %d)", where, rank, len(urls))
            return
        assert error is not None
        raise self._unreachable(error) from error

    def on_connection_lost(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call `callback(error)` whenever a connection of this broker closes, now or
        after a reconnect: `error` is why RabbitMQ (or the network) closed it, None
        for our own `close()`. It runs in the connection's reader: it must not wait."""
        self._on_lost.append(callback)

    def _connection_closed(self, connection: object, error: BaseException | None = None) -> None:
        if connection is not self.connection:
            error = None  # a connection we replaced or closed ourselves
        for callback in self._on_lost:
            callback(error)

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
            except CONNECTION_ERRORS as e:
                log.debug("closing AMQP connection: %s", e)

    async def channel(self, prefetch: int | None = None) -> AbstractChannel:
        """A new confirming channel on the connection, with `prefetch` if given.

        For the broker package (and tests of it): everything above it goes
        through `Broker`'s operations or a `Consumer`.
        """
        if self.connection is None or not self.is_connected:
            raise BrokerConnectionError(f"not connected to RabbitMQ at {self.config.describe()}")
        if self.open_channels() >= CHANNEL_MAX:
            raise BrokerError(
                f"{self.open_channels()} channels are open on this connection, RabbitMQ's limit"
                f" (channel_max {CHANNEL_MAX}): one more would close the connection"
            )
        try:
            channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
            if prefetch is not None:
                await channel.set_qos(prefetch_count=prefetch)
        except CHANNEL_ERRORS as e:
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
        """Run `action`, turning the libraries' exceptions into ours."""
        try:
            return await action()
        except aio_pika.exceptions.PublishError as e:
            raise UnroutableJob(f"{what}: no queue takes it (is the partition started?)") from e
        except (aiormq.exceptions.ChannelClosed, aio_pika.exceptions.DeliveryError) as e:
            self._publish_channel = None
            raise BrokerError(f"{what}: {e}") from e
        except CONNECTION_ERRORS as e:
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
