"""The channels a node's queue consumers share, on as many connections as they need.

A channel per consumed queue stopped a node at about 1,020 partitions:
RabbitMQ allows `channel_max` (2,047) channels per connection. So up to
`CONSUMERS_PER_CHANNEL` consumers share a channel, up to
`CHANNELS_PER_CONNECTION` such channels share a connection, and the node
opens one more connection (same broker, same name) when its connections are
full. Prefetch stays per queue: RabbitMQ applies a `basic.qos` (global=false)
to each consumer created after it on the channel, so `SharedChannel.consume`
sets the queue's prefetch just before its `basic.consume`, one queue at a
time on each channel.

A channel error (a queue deleted between its declare and its consume, a
`consumer_timeout`, an ack RabbitMQ does not know) closes one channel: its
consumers, no more than `CONSUMERS_PER_CHANNEL`, hear of it and the node
consumes their queues again on another channel, as after a lost connection.
A consumer that leaves a channel others keep gives back its unsettled
deliveries itself (`Acker.give_back_all`); the last one closes the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ..broker import Broker, Consumer, OnDelivery
from ..errors import BrokerConnectionError, BrokerError
from .acks import ChannelAcks

log = logging.getLogger(__name__)

# Consumers per channel: what one channel error takes down (they come back within
# a convergence), against channels kept open. See docs/decisions.md.
CONSUMERS_PER_CHANNEL = 8
# Consumer channels per connection, far below channel_max: 8 x 256 = 2,048
# queues a connection; the publish, declare, control and key channels of the
# node's first connection fit beside them.
CHANNELS_PER_CONNECTION = 256

# After a connection for consumers could not be opened, the takes that need one fail at
# once for this long, rather than each waiting out its own connect timeout in turn.
CONNECT_BACKOFF = 2.0
# Channels opened at once when consumers wait for them (a node converging thousands of queues).
OPEN_AT_ONCE = 32

OnClosed = Callable[[BaseException | None], None]


class SharedChannel:
    """One channel that up to `CONSUMERS_PER_CHANNEL` queue consumers share."""

    def __init__(self, broker: Broker, number: int) -> None:
        self.broker = broker
        """The connection the channel is on."""
        self.channel = Consumer(broker, f"consumer channel {number}")
        """The channel."""
        self.acks = ChannelAcks()
        """Its unsettled deliveries, across its consumers (acks are per channel)."""
        self.members: dict[object, OnClosed] = {}
        """Its consumers, each with what to call when the channel closes."""
        self._lock = asyncio.Lock()  # a qos and its consume go together
        self._cancelled: dict[str, Callable[[str], None]] = {}
        self.lost = False
        """Whether the channel closed or its connection went (it takes no consumer then)."""
        self.channel.on_cancelled(self._on_cancel)
        self.channel.on_closed(self.lose)

    @property
    def is_open(self) -> bool:
        """Whether the channel is open on a live connection."""
        return not self.lost and self.channel.is_open and self.broker.is_connected

    async def consume(
        self,
        queue: str,
        on_delivery: OnDelivery,
        prefetch: int,
        on_cancelled: Callable[[str], None],
        arguments: dict[str, Any] | None = None,
        tag: str | None = None,
    ) -> str:
        """Consume `queue` with its own `prefetch`; `on_cancelled(tag)` if RabbitMQ cancels it."""
        async with self._lock:
            await self.channel.set_prefetch(prefetch)
            tag = await self.channel.consume(queue, on_delivery, arguments=arguments, tag=tag)
        self._cancelled[tag] = on_cancelled
        return tag

    async def cancel(self, tag: str) -> None:
        """Stop consumer `tag`; its unacked deliveries stay on the channel, to be settled."""
        self._cancelled.pop(tag, None)
        await self.channel.cancel(tag)

    def _on_cancel(self, tag: str) -> None:
        callback = self._cancelled.pop(tag, None)
        if callback is not None:
            callback(tag)

    def lose(self, error: BaseException | None) -> None:
        """The channel closed (or its connection went): tell each of its consumers."""
        if self.lost:
            return
        self.lost = True
        if error is not None and self.members and self.broker.is_connected:  # a channel error
            log.warning(
                "RabbitMQ closed a consumer channel (%s); its %d queue(s) are consumed again",
                error,
                len(self.members),
            )
        for callback in list(self.members.values()):
            callback(error)


class ConsumerChannels:
    """A node's consumer channels: `take` one for a queue consumer, `leave` it after."""

    def __init__(
        self,
        broker: Broker,
        per_channel: int = CONSUMERS_PER_CHANNEL,
        per_connection: int = CHANNELS_PER_CONNECTION,
    ) -> None:
        """`broker`: the node's connection, the first its consumers use; more are opened
        with its configuration and name."""
        self.per_channel = per_channel
        self.per_connection = per_connection
        self.connections: list[Broker] = [broker]
        """The node's connections: its own first, then those opened for consumers."""
        self._channels: dict[Broker, dict[SharedChannel, None]] = {broker: {}}
        self._spare: dict[SharedChannel, None] = {}  # open, with room for a consumer
        self._lock = asyncio.Lock()
        self._opened = 0
        self._waiting = 0  # takes waiting for the lock
        self._on_lost: Callable[[], None] | None = None
        self._closing = False
        self._refused: tuple[float, BrokerError] | None = None  # the last failed connect, and when

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Call `callback` when a connection opened for consumers drops (its channels'
        consumers hear of it too); the node's own connection is the node's to watch."""
        self._on_lost = callback

    def channels(self) -> list[SharedChannel]:
        """The consumer channels open now."""
        return [c for by in self._channels.values() for c in by if c.is_open]

    async def take(self, member: object, on_closed: OnClosed) -> SharedChannel:
        """A channel with room for `member`, which hears `on_closed(error)` if it closes."""
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            while self._spare:
                shared = next(iter(self._spare))
                if shared.is_open:
                    break
                self._drop(shared)
            else:
                # Open at once the channels the consumers waiting behind this one need:
                # one after the other, 625 channel opens held a converging node back.
                shared = await self._open(1 + self._waiting // self.per_channel)
            shared.members[member] = on_closed
            if len(shared.members) >= self.per_channel:
                self._spare.pop(shared, None)
            return shared
        finally:
            self._lock.release()

    async def _open(self, count: int) -> SharedChannel:
        """Open up to `count` channels at once on a connection with room; the first of them."""
        for broker in self.connections:
            for dead in [c for c in self._channels[broker] if not c.is_open]:
                self._drop(dead)
            if not broker.is_connected:
                if broker is self.connections[0]:
                    continue  # the node's own: the node reconnects it
                for shared in list(self._channels[broker]):
                    self._drop(shared)
                await self._guarded(broker.connect())
            if len(self._channels[broker]) < self.per_connection:
                break
        else:
            broker = await self._connect()
        count = max(1, min(count, OPEN_AT_ONCE, self.per_connection - len(self._channels[broker])))
        made = []
        for _ in range(count):
            self._opened += 1
            made.append(SharedChannel(broker, self._opened))
        results = await asyncio.gather(*(m.channel.open() for m in made), return_exceptions=True)
        opened = [m for m, result in zip(made, results, strict=True) if result is None]
        for shared, result in zip(made, results, strict=True):
            if result is not None:
                await shared.channel.close()
        if not opened:
            error = results[0]
            assert isinstance(error, BaseException)
            raise error
        for shared in opened:
            self._channels[broker][shared] = None
            self._spare[shared] = None
        return opened[0]

    async def _connect(self) -> Broker:
        """One more connection, to the broker of the node's and with its name (the
        console and `partition show` tell the node by it)."""
        first = self.connections[0]
        broker = Broker(first.config, first.connection_name)
        broker.on_connection_lost(lambda error: self._connection_lost(broker, error))
        await self._guarded(broker.connect())
        self.connections.append(broker)
        self._channels[broker] = {}
        log.info("opened connection %d to RabbitMQ for consumers", len(self.connections))
        return broker

    async def _guarded(self, connecting: Coroutine[Any, Any, None]) -> None:
        """Connect, unless a connect failed less than CONNECT_BACKOFF ago: then fail as it did."""
        if self._refused is not None and time.monotonic() < self._refused[0] + CONNECT_BACKOFF:
            connecting.close()
            raise BrokerConnectionError(str(self._refused[1]))
        try:
            await connecting
        except BrokerError as e:
            self._refused = (time.monotonic(), e)
            raise
        self._refused = None

    def _drop(self, shared: SharedChannel) -> None:
        """Forget a channel: it takes no more consumers (those on it leave it one by one)."""
        self._spare.pop(shared, None)
        self._channels.get(shared.broker, {}).pop(shared, None)

    async def leave(self, shared: SharedChannel, member: object) -> None:
        """`member` left `shared` (after cancelling its consumer and settling or giving
        back its deliveries); the last one out closes the channel."""
        shared.members.pop(member, None)
        if shared.members and shared.is_open:
            if shared in self._channels.get(shared.broker, {}):
                self._spare[shared] = None
            return
        if not shared.members:
            self._drop(shared)
            await shared.channel.close()

    def _connection_lost(self, broker: Broker, error: BaseException | None) -> None:
        if self._closing or error is None:
            return
        log.warning("lost a consumer connection to RabbitMQ (%s); its queues are consumed again", error)
        for shared in list(self._channels.get(broker, {})):
            shared.lose(error)
        if self._on_lost is not None:
            self._on_lost()

    async def close(self) -> None:
        """Close every channel and the connections opened for consumers."""
        self._closing = True
        for by in self._channels.values():
            for shared in list(by):
                with contextlib.suppress(BrokerConnectionError):
                    await shared.channel.close()
        for broker in self.connections[1:]:
            await broker.close()
        self._channels = {self.connections[0]: {}}
        self.connections = self.connections[:1]
        self._spare.clear()
        self._closing = False
