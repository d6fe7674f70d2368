"""The due queue: every node moves the delayed messages now due to their target queues.

The delay levels (`broker/delaying.py`) end in one queue per namespace; this
consumes it on every node, like the release queue, and moves each message to
the queue its `x-roger-target` header names: published there (confirmed,
mandatory) before it is acked here, so a node dying in between can leave a
copy, never lose one (acks go out batched, as a partition queue's do, so up
to a batch of copies). A message is never dropped: one whose target no longer
exists (its partition was removed) or that names none goes to the
namespace's undeliverable queue with the reason, and is logged. Nothing is
delayed again by this node's clock: the TTLs of the levels already made sure
it is not early, and nodes' clocks differ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..broker import Broker, Delivery, KeptConsumer, RawDelivery
from ..errors import RogerError
from ..names import due_queue_name, undeliverable_queue_name
from .acks import Acker

log = logging.getLogger(__name__)

# Moves under way per node: each is one confirmed publish, so a burst of due jobs
# (thousands enqueued with one delay) is moved at thousands a second.
DUE_PREFETCH = 250
# A move RabbitMQ refused is given back after this pause (the channel may be gone).
MOVE_AGAIN_DELAY = 1.0


class DueQueue:
    """Consumes the namespace's due queue and moves each message to its target queue.

    A `broker.KeptConsumer`: `start()` is idempotent, the node calls it whenever it
    converges, and it declares the delay levels first, so retries and delayed jobs
    of this namespace always find them.
    """

    def __init__(self, broker: Broker, namespace: str) -> None:
        self.broker = broker
        self.namespace = namespace
        self.queue_name = due_queue_name(namespace)
        self._kept = KeptConsumer(
            broker, self.queue_name, self._on_due, broker.plain_arguments(), prefetch=DUE_PREFETCH
        )
        self._working: set[asyncio.Task[Any]] = set()
        self._acker = Acker(max_batch=DUE_PREFETCH // 2)  # batched acks, as a partition queue's

    @property
    def is_alive(self) -> bool:
        """Whether the due queue is being consumed."""
        return self._kept.is_alive

    def on_closed(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the consumer is lost: its channel closed, or RabbitMQ cancelled it."""
        self._kept.on_lost(callback)

    async def start(self) -> None:
        """Declare the delay levels and consume the due queue, unless already doing so."""
        if self.is_alive:
            return
        await self.broker.declare_delays(self.namespace, again=True)
        consumer = self._kept.consumer
        await self._kept.start()
        if self._kept.consumer is not consumer:  # a new channel: its tags start again
            self._acker = Acker(max_batch=DUE_PREFETCH // 2)

    async def close(self) -> None:
        """Stop consuming; unacked messages go back to the due queue."""
        for task in list(self._working):
            task.cancel()
        await asyncio.gather(*self._working, return_exceptions=True)
        await self._acker.flush()
        await self._kept.close()

    async def _on_due(self, raw: RawDelivery) -> None:
        delivery = Delivery.from_raw(raw)
        self._acker.track(delivery)
        task = asyncio.current_task()  # aiormq's task for this delivery
        if task is not None:
            self._working.add(task)
        try:
            await self._move(delivery)
        finally:
            if task is not None:
                self._working.discard(task)

    async def _move(self, delivery: Delivery) -> None:
        try:
            reason = await self.broker.deliver_due(self.namespace, delivery)
            await self._acker.ack(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # RabbitMQ refused (or a fault of ours): it stays, comes again
            ours = not isinstance(e, RogerError)
            log.log(
                logging.ERROR if ours else logging.WARNING,
                "could not move due job %s of %s (%s); trying again",
                delivery.message_id,
                _partition(delivery),
                e,
                exc_info=ours,
            )
            await asyncio.sleep(MOVE_AGAIN_DELAY)
            try:  # given back, not left unacked: that would hold back the acks of later ones
                await delivery.give_back()
                self._acker.settled(delivery)
            except RogerError as again:
                log.debug("due job %s goes back with its channel: %s", delivery.message_id, again)
            return
        if reason is not None:
            log.error(
                "delayed job %s of %s could not be delivered: %s; kept in %s",
                delivery.message_id,
                _partition(delivery),
                reason,
                undeliverable_queue_name(self.namespace),
            )


def _partition(delivery: Delivery) -> str:
    """The partition a job's message names (its app_id), for the logs."""
    return str(delivery.amqp_properties.app_id or "?")
