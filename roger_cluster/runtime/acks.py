"""Batched acks: one `basic.ack(multiple=True)` for a run of finished deliveries.

Acking each message is the largest single cost of consuming from RabbitMQ.
`multiple=True` acks every unacked delivery on the channel up to a tag, so it
may only cover deliveries whose jobs are *all* settled: a channel's
`ChannelAcks` keeps its open delivery tags in order, across the consumers that
share the channel, and acks up to the highest tag below which everything is
done. A delivery done behind one still running (a long job of the same queue,
or of another queue on the channel) is acked alone at the same flush, so a
long job never holds back another consumer's prefetch window.

Each consumer settles through an `Acker` of its own on the channel's
`ChannelAcks`: it sends the acks at once when `max_batch` of its deliveries
are waiting, else within `delay` seconds, and always before it leaves the
channel. A node that dies before a flush leaves those jobs unacked: they run
again elsewhere (at least once), never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging

from ..broker import Delivery
from ..errors import BrokerError

log = logging.getLogger(__name__)

MAX_BATCH = 50
DELAY = 0.005


class ChannelAcks:
    """The unsettled deliveries of one channel, whichever consumer they came to."""

    def __init__(self, delay: float = DELAY) -> None:
        self.delay = delay
        self._open: list[int] = []  # min-heap of delivery tags not passed yet
        self._done: dict[int, Delivery | None] = {}  # settled, still open (None: nothing to ack)
        self._loose: dict[int, Delivery] = {}  # done, not acked, behind an open one
        self._ackable: Delivery | None = None  # highest contiguous done delivery
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None
        # One flush at a time: a lone ack still being written when a later flush acks past
        # it with multiple=True would reach RabbitMQ as an unknown tag (a channel error).
        self._sending = asyncio.Lock()

    def track(self, message: Delivery) -> None:
        """A delivery arrived (call before anything can settle it)."""
        heapq.heappush(self._open, _tag(message))

    def settled(self, message: Delivery) -> None:
        """The delivery was settled otherwise (nacked): nothing to ack for it."""
        self._done[_tag(message)] = None
        self._advance()

    def done(self, message: Delivery) -> None:
        """The delivery's job is done: ack it with the next flush (soon)."""
        tag = _tag(message)
        self._done[tag] = self._loose[tag] = message
        self._advance()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._flush_soon)

    def _advance(self) -> None:
        """Move past every settled delivery at the front of the open ones."""
        while self._open and self._open[0] in self._done:
            tag = heapq.heappop(self._open)
            self._done.pop(tag)
            message = self._loose.pop(tag, None)  # None: nothing to ack, or acked alone
            if message is not None:
                self._ackable = message

    def _flush_soon(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Ack the run of finished deliveries now, and each one done behind a running one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._sending:
            message, self._ackable = self._ackable, None
            loose, self._loose = list(self._loose.values()), {}
            acks = [(message, True)] if message is not None else []
            for ack, multiple in acks + [(m, False) for m in loose]:
                try:
                    await ack.ack(multiple=multiple)
                except Exception as e:  # the channel went away: RabbitMQ redelivers them
                    log.warning("could not ack deliveries up to %s: %s", ack.delivery_tag, e)
                    return


class Acker:
    """The acks of one consumer, on the `ChannelAcks` of its channel (its own if not given)."""

    def __init__(
        self, max_batch: int = MAX_BATCH, delay: float = DELAY, channel: ChannelAcks | None = None
    ) -> None:
        self.max_batch = max_batch
        self.channel = channel if channel is not None else ChannelAcks(delay)
        self._mine: dict[int, Delivery] = {}  # this consumer's deliveries not settled yet
        self._waiting = 0

    def track(self, message: Delivery) -> None:
        """A delivery arrived (call before anything can settle it)."""
        self._mine[_tag(message)] = message
        self.channel.track(message)

    def settled(self, message: Delivery) -> None:
        """The delivery was settled otherwise (nacked): it no longer holds the run back,
        and is not a tag to ack up to."""
        if self._mine.pop(_tag(message), None) is not None:
            self.channel.settled(message)

    async def ack(self, message: Delivery) -> None:
        """The delivery's job is done: ack it with the next batch (not if it was given
        back already, by `give_back_all`)."""
        if self._mine.pop(_tag(message), None) is None:
            return
        self.channel.done(message)
        self._waiting += 1
        if self._waiting >= self.max_batch:
            await self.flush()

    async def flush(self) -> None:
        """Ack the run of finished deliveries now."""
        self._waiting = 0
        await self.channel.flush()

    async def give_back_all(self) -> int:
        """Give every delivery of this consumer still unsettled back to its queue (the
        consumer leaves a channel that others keep); their jobs' acks are dropped then."""
        mine, self._mine = self._mine, {}
        for message in mine.values():
            # The nack first: a multiple ack past its tag, sent before it, would ack it.
            with contextlib.suppress(BrokerError):
                await message.give_back()
            self.channel.settled(message)
        return len(mine)


def _tag(message: Delivery) -> int:
    tag = message.delivery_tag
    assert tag is not None
    return tag
