"""Settling a delivery: the one place a message is acked, requeued, retried or buried.

Used by the queue consumers and by the execution-key chains, which take their
messages from waiting queues. A republish (retry, bury) is confirmed before
the ack, so a crash in between can duplicate a job but never lose it.
"""

from __future__ import annotations

from ..broker import Broker
from ..names import buried_queue_name
from .acks import Acker
from .delivery import Delivery
from .worker import Action, Outcome


async def settle(
    broker: Broker,
    partition: str,
    queue: str,
    message: Delivery,
    outcome: Outcome,
    acker: Acker | None = None,
) -> None:
    """Do what `outcome` says with `message`, a delivery of `partition`-`queue`.

    With an `acker`, the final ack goes out batched with its neighbours.
    """
    if outcome.action is Action.REQUEUE:
        await message.nack(requeue=True)
        if acker is not None:
            acker.settled(message)
        return
    if outcome.action is Action.RETRY:
        assert outcome.message is not None
        await broker.publish_retry(outcome.message, partition, outcome.delay)
    elif outcome.action is Action.BURY:
        properties = message.properties()
        properties["headers"] = {**properties["headers"], **outcome.headers}
        await broker.publish_bytes(message.body, buried_queue_name(partition, queue), properties)
    if acker is not None:
        await acker.ack(message)
    else:
        await message.ack()
