"""One consumer of one partition queue on this node: the AMQP side of execution.

Consumers share channels (`channels.ConsumerChannels`: a bounded number per
channel, so a channel error stops no more than those), and each keeps its own
prefetch, the queue's concurrency: RabbitMQ shows one consumer per node per
queue with that prefetch. Each delivery goes through the node's `Pipeline`,
which settles it once its job is done; a node that dies before that leaves
the message unacked and RabbitMQ gives it to another node.

A consumer can be lost two ways: its channel closes (its own error or a
neighbour's on the channel, or the connection went), or RabbitMQ cancels it
(basic.cancel from the server: the queue was deleted, by hand or otherwise).
Both wake the node's reconciler. After a cancel the channel is still open and
carries the deliveries of the jobs still running, so the node declares the
queue again and consumes it on that same channel (`resume`), where those jobs
are settled as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from ..broker import REDECLARE_DELAY, Delivery, RawDelivery
from ..names import queue_name
from .acks import Acker
from .channels import ConsumerChannels, SharedChannel
from .execution import Outcome
from .pipeline import Pipeline
from .slots import Slots
from .worker import UNWIND_GRACE, Stop

log = logging.getLogger(__name__)

# Time a job past its limit needs to be stopped and settled, on top of the limit.
CONSUMER_TIMEOUT_MARGIN = 60.0


class QueueConsumer:
    """Consumes `partition`-`queue` with prefetch = concurrency."""

    def __init__(
        self,
        channels: ConsumerChannels,
        pipeline: Pipeline,
        partition: str,
        queue: str,
        concurrency: int,
        on_consume_ok: Callable[[QueueConsumer], None] | None = None,
    ) -> None:
        self.channels = channels
        self.pipeline = pipeline
        self.worker = pipeline.worker
        self.partition = partition
        self.queue = queue
        self.name = queue_name(partition, queue)
        self.concurrency = concurrency
        self.slots = Slots(concurrency)
        self._on_consume_ok = on_consume_ok
        self._channel: SharedChannel | None = None
        self._acker = Acker(max_batch=_batch(concurrency))
        self._tag: str | None = None
        self._on_lost: Callable[[], None] | None = None
        self._lost_tag: str | None = None  # the tag of a consumer RabbitMQ cancelled
        self._resume_at = 0.0  # monotonic time before which not to consume it again

    @property
    def is_alive(self) -> bool:
        """Whether the consumer's channel is open and consuming."""
        return self._tag is not None and self.is_open

    @property
    def is_open(self) -> bool:
        """Whether the consumer's channel is open (consuming or not)."""
        return self._channel is not None and self._channel.is_open

    async def start(self) -> None:
        """Take a shared channel and consume with prefetch = concurrency."""
        channel: SharedChannel | None = None

        def closed(error: BaseException | None) -> None:
            self._closed(channel, error)

        channel = await self.channels.take(self, closed)
        self._channel = channel
        self._acker = Acker(max_batch=_batch(self.concurrency), channel=channel.acks)
        try:
            await self._consume()
        except BaseException:
            await self.close()  # leave the channel: it counts its consumers
            raise

    def _cancelled_by_broker(self, channel: SharedChannel, tag: str) -> None:
        if channel is not self._channel or tag != self._tag:
            return  # an older channel, or a consumer we cancelled ourselves
        self._tag, self._lost_tag = None, tag
        self._resume_at = time.monotonic() + REDECLARE_DELAY
        log.warning(
            "RabbitMQ cancelled the consumer of %s (the queue was deleted?); declaring it again,"
            " %d running job(s) of it go on",
            self.name,
            self.slots.in_use,
        )
        if self._on_lost is not None:
            self._on_lost()

    async def wait_resumable(self) -> None:
        """Return once REDECLARE_DELAY has passed since RabbitMQ cancelled the consumer."""
        await asyncio.sleep(max(0.0, self._resume_at - time.monotonic()))

    async def resume(self, concurrency: int) -> None:
        """Consume again on the same channel after RabbitMQ cancelled the consumer
        (the caller declared the queue again); deliveries still running stay on it.

        The new consumer takes the lost one's tag: RabbitMQ 3.10's management
        API keeps a cancelled consumer's record while its channel lives, and
        showed both otherwise (`partition show` listed every node twice).
        """
        assert self._channel is not None and self._tag is None
        await self._apply(concurrency)
        await self._consume(self._lost_tag)

    async def _consume(self, tag: str | None = None) -> None:
        channel = self._channel
        assert channel is not None
        self._tag = await channel.consume(
            self.name,
            self._on_delivery,
            self.concurrency,
            lambda lost: self._cancelled_by_broker(channel, lost),
            arguments=self._consume_arguments(),
            tag=tag,
        )
        self._lost_tag = None
        log.info(
            "consuming %s with prefetch %d (consume-ok at %.6f)",
            self.name,
            self.concurrency,
            time.time(),
        )
        if self._on_consume_ok is not None:
            self._on_consume_ok(self)

    def _consume_arguments(self) -> dict[str, Any]:
        """Ask RabbitMQ (3.12+; older ones ignore it) to allow our longest job before it
        closes the channel for a missing ack (`consumer_timeout`, 30 min by default)."""
        limit = self.worker.registry.longest_time_limit()
        if limit is None:
            return {}
        return {"x-consumer-timeout": int((limit + CONSUMER_TIMEOUT_MARGIN) * 1000)}

    def on_closed(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the channel closes for any reason but our own close(),
        and when RabbitMQ cancels the consumer (see `resume`)."""
        self._on_lost = callback

    def _closed(self, channel: SharedChannel | None, error: BaseException | None) -> None:
        if channel is None or self._channel is not channel:
            return
        if error is not None and "acknowledgement" in str(error):
            log.error(
                "RabbitMQ closed the channel of %s: a job outlived its consumer_timeout (%s);"
                " its message was requeued. Set max_execution_time on long jobs or raise"
                " consumer_timeout in rabbitmq.conf",
                self.name,
                error,
            )
        if self._on_lost is not None:
            self._on_lost()

    async def set_concurrency(self, concurrency: int) -> None:
        """Apply a new concurrency: new prefetch for a new consumer on the same channel.

        Deliveries of the old consumer stay on the channel and are acked there
        as their jobs end; nothing is requeued or run twice.
        """
        if concurrency == self.concurrency:
            return
        await self._cancel()
        await self._apply(concurrency)
        if self._channel is not None:
            await self._consume()

    async def _apply(self, concurrency: int) -> None:
        """Take `concurrency` as the slots, ack batch and prefetch of the next consumer."""
        if concurrency == self.concurrency:
            return
        self.concurrency = concurrency
        self._acker.max_batch = _batch(concurrency)
        await self.slots.resize(concurrency)  # the prefetch goes with the next consume

    async def _cancel(self) -> None:
        tag, self._tag = self._tag, None
        if tag is not None and self._channel is not None:
            await self._channel.cancel(tag)

    async def stop(self, timeout: float | None = None) -> None:
        """Stop taking jobs, let running ones finish (up to `timeout`), close.

        Jobs still running then are stopped and their messages requeued (not
        counted as a retry); a sync job's thread cannot be stopped, so its
        message goes back to the queue when the channel closes.
        """
        try:
            await self._cancel()
            await asyncio.wait_for(self.slots.wait_idle(), timeout)
        except TimeoutError:
            stopped = self.worker.stop_queue(self.partition, self.queue, Stop.SHUTDOWN)
            log.warning(
                "%d job(s) of %s still running after %.1fs; stopped, back to the queue",
                stopped,
                self.name,
                timeout or 0,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.slots.wait_idle(), UNWIND_GRACE + 1)
        except Exception as e:  # the channel may already be gone with the connection
            log.debug("stopping consumer of %s: %s", self.name, e)
        finally:
            await self.close()

    async def close(self) -> None:
        """Leave the channel now (acking what finished); unacked deliveries go back to the
        queue (given back here: the channel may stay open for its other consumers)."""
        channel, self._channel = self._channel, None
        tag, self._tag = self._tag, None
        if channel is None:
            return
        if channel.is_open:
            try:
                if tag is not None:
                    await channel.cancel(tag)
                await self._acker.flush()
                await self._acker.give_back_all()
            except Exception as e:  # the connection went first: those deliveries go back
                log.debug("acking the finished jobs of %s: %s", self.name, e)
        await self.channels.leave(channel, self)

    async def _on_delivery(self, raw: RawDelivery) -> None:
        delivery = Delivery.from_raw(raw)  # here, not in the broker: see broker/consuming.py
        acker = self._acker  # the acker of the channel it came on, even if the channel is replaced
        acker.track(delivery)
        await self.slots.acquire()
        outcome: Outcome | None = None
        try:
            outcome = await self.pipeline.handle(self.partition, self.queue, delivery, acker)
        finally:
            if outcome is not None and outcome.lingering is not None:
                # A job we could not stop still runs in its thread (or a chain runs the
                # jobs of its key): keep its slot.
                await asyncio.wait({outcome.lingering})
            await self.slots.release()


def _batch(concurrency: int) -> int:
    """Ack when half the prefetch window is done, so RabbitMQ never waits on us for long."""
    return max(1, concurrency // 2)
