"""Settling an execution: the one place a job's delivery is acked, requeued, retried or buried.

For the partition queues' consumers and the execution-key chains alike
(`acks.py` only sends, batched, the acks decided here; the only other acks
in the runtime are of the release queue's messages, which are not jobs). A
republish (retry, bury) is confirmed before the ack, so a crash in between
can duplicate a job but never lose it. Keys are freed only after the
delivery was settled, by `release.py`, so etcd being unreachable can delay a
key's release but never makes a finished job run again. A delivery that
cannot be settled because RabbitMQ refused goes back to its queue after a
pause (or with its channel); `settle` itself never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..broker import Broker
from ..cluster.execkeys import ExecKeys
from .acks import Acker
from .execution import Action, Execution, Outcome
from .release import Releaser
from .ticks import DEFERRED, DUPLICATE

log = logging.getLogger(__name__)

# A delivery we could not retry or bury goes back to its queue after this pause,
# so a broker refusing the republish cannot make a node spin.
GIVE_BACK_DELAY = 1.0


class Settler:
    """Settles executions on one node, then frees what their jobs held in etcd."""

    def __init__(self, broker: Broker, exec_keys: ExecKeys, releaser: Releaser, namespace: str) -> None:
        self.broker = broker
        self.namespace = namespace  # whose delay levels a retry goes through
        self.exec_keys = exec_keys
        self.releaser = releaser

    async def settle(self, ex: Execution, outcome: Outcome, acker: Acker | None = None) -> bool:
        """Do what `outcome` says with the delivery of `ex`; with an `acker`, the final ack
        goes out batched with its neighbours. Returns False if RabbitMQ refused (the
        delivery was given back)."""
        try:
            await self._settle(ex, outcome, acker)
        except Exception as e:  # the broker refused, or the channel went away under us
            log.warning(
                "could not settle job %s of %s-%s (%s); RabbitMQ will deliver it again",
                ex.delivery.message_id,
                ex.partition,
                ex.queue,
                e,
                extra=ex.log_fields(),
            )
            await self._give_back(ex, acker)
            return False
        await self._release(ex, outcome)
        return True

    async def _settle(self, ex: Execution, outcome: Outcome, acker: Acker | None) -> None:
        delivery = ex.delivery
        action = outcome.action
        if action is Action.REQUEUE:
            await delivery.give_back()
            if acker is not None:
                acker.settled(delivery)
            return
        if action is Action.RETRY:
            assert outcome.message is not None
            await self.broker.publish_retry(outcome.message, ex.partition, self.namespace, outcome.delay)
        elif action is Action.BURY:
            properties = delivery.properties()
            properties["headers"] = {**properties["headers"], **outcome.headers}
            await self.broker.bury(delivery.body, ex.partition, ex.queue, properties)
        if acker is not None:
            await acker.ack(delivery)
        else:
            await delivery.ack()

    async def _give_back(self, ex: Execution, acker: Acker | None) -> None:
        """Requeue a delivery we could not settle, if its channel still lives."""
        with contextlib.suppress(Exception):  # a closed channel requeues it by itself
            await asyncio.sleep(GIVE_BACK_DELAY)
            await ex.delivery.give_back()
            if acker is not None:
                acker.settled(ex.delivery)

    async def _release(self, ex: Execution, outcome: Outcome) -> None:
        """Free the job's keys now that its delivery is settled."""
        message = ex.message
        if message is None or outcome.action is Action.REQUEUE:
            return  # not a job, or still queued
        if ex.chained and message.execution_key is not None:
            key = message.execution_key
            await self.releaser.now(
                f"count off job {message.id} of execution key {key}",
                lambda: self.exec_keys.finish_one(ex.partition, key),
            )
        if outcome.ending in (DUPLICATE, DEFERRED):
            return  # a copy dropped unrun holds nothing; its id's keys are the other copy's
        left = outcome.action is not Action.RETRY and outcome.ending != "parked"  # gone for good
        if message.queue_key is not None and left:
            self.releaser.queue_key(ex.partition, message.queue_key, message.id)
        if message.firing is not None and message.schedule is not None and left:
            tick = int(message.scheduled_at or 0)
            self.releaser.tick(message.schedule, tick, message.firing)
