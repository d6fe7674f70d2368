"""Batched acks: one `basic.ack(multiple=True)` for a run of finished deliveries.

Acking each message is the largest single cost of consuming from RabbitMQ.
`multiple=True` acks every unacked delivery on the channel up to a tag, so it
may only cover deliveries whose jobs are *all* settled: the acker keeps the
channel's open delivery tags in order and acks up to the highest tag below
which everything is done. The ack is sent at once when `max_batch` are
waiting, else within `delay` seconds, and always before the channel closes.
A node that dies before a flush leaves those jobs unacked: they run again
elsewhere (at least once), never lost.
"""

from __future__ import annotations

import asyncio
import heapq
import logging

from ..broker import Delivery

log = logging.getLogger(__name__)

MAX_BATCH = 50
DELAY = 0.005


class Acker:
    """Acks the deliveries of one channel in contiguous batches."""

    def __init__(self, max_batch: int = MAX_BATCH, delay: float = DELAY) -> None:
        self.max_batch = max_batch
        self.delay = delay
        self._open: list[int] = []  # min-heap of delivery tags not settled yet
        self._done: dict[int, Delivery | None] = {}  # settled, still open
        self._ackable: Delivery | None = None  # highest contiguous done delivery
        self._waiting = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    def track(self, message: Delivery) -> None:
        """A delivery arrived (call before anything can settle it)."""
        heapq.heappush(self._open, _tag(message))

    def settled(self, message: Delivery) -> None:
        """The delivery was settled otherwise (nacked): it no longer holds the run back,
        and is not a tag to ack up to."""
        self._done[_tag(message)] = None
        self._advance()

    async def ack(self, message: Delivery) -> None:
        """The delivery's job is done: ack it with the next batch."""
        self._done[_tag(message)] = message
        self._advance()
        if self._waiting >= self.max_batch:
            await self.flush()
        elif self._ackable is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._flush_soon)

    def _advance(self) -> None:
        """Move past every settled delivery at the front of the open ones."""
        while self._open and self._open[0] in self._done:
            message = self._done.pop(heapq.heappop(self._open))
            if message is not None:
                self._ackable = message
                self._waiting += 1

    def _flush_soon(self) -> None:
        self._timer = None
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Ack the run of finished deliveries now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        message, self._ackable, self._waiting = self._ackable, None, 0
        if message is not None:
            try:
                await message.ack(multiple=True)
            except Exception as e:  # the channel went away: RabbitMQ redelivers them
                log.warning("could not ack deliveries up to %s: %s", message.delivery_tag, e)


def _tag(message: Delivery) -> int:
    tag = message.delivery_tag
    assert tag is not None
    return tag
