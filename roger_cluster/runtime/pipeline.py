"""The job pipeline: the one way every job delivery goes, from a queue to its settlement.

    delivery -> decode once -> not a job / delivered too often? -> bury
             -> a schedule's tick and not the copy its record names? -> ack unrun (ticks.py)
             -> keyed and not run under its key? -> chains.admit (park, or take the key)
             -> worker.run -> Outcome -> settler.settle (ack, requeue, retry, bury; then keys)

Deliveries of the partition queues (`consumer.py`) and of the execution-key
waiting queues (a `Chain`, run here) take the same steps, so a poison job
is buried, and a finished job settled and its keys freed, the same way
whichever queue it came from. Job code cannot make `handle` raise: the
worker turns whatever a job raises into an outcome, and RabbitMQ or etcd
refusing is settled or retried here. A fault of the runtime itself that
escapes `handle` leaves the delivery unacked: RabbitMQ delivers it again
when its channel closes, and the delivery limit buries it if it keeps failing.
"""

from __future__ import annotations

import asyncio
import logging

from ..broker import Delivery
from ..codec import decode
from ..errors import DecodeError, RogerError
from ..keyed import WAKE_JOB
from .acks import Acker
from .chains import Chain, Chains
from .execution import DONE, Action, Execution, Outcome
from .settle import Settler
from .ticks import TickGate
from .worker import Worker, refused

log = logging.getLogger(__name__)

# A keyed job that could not be parked (etcd or RabbitMQ trouble) waits this long
# in the delay levels, then comes back to be parked again.
PARK_AGAIN_DELAY = 5


class Pipeline:
    """Runs deliveries of one node through decode, keys, the worker and the settler."""

    def __init__(
        self,
        worker: Worker,
        settler: Settler,
        chains: Chains,
        delivery_limit: int,
        ticks: TickGate | None = None,
    ) -> None:
        self.worker = worker
        self.ticks = ticks
        self.settler = settler
        self.chains = chains
        # Deliveries of one message before it is buried as poison; 0: no limit.
        self.delivery_limit = delivery_limit

    async def handle(self, partition: str, queue: str, delivery: Delivery, acker: Acker) -> Outcome:
        """Run one delivery of the partition queue `partition`-`queue` and settle it."""
        ex = Execution(partition, queue, delivery)
        outcome = await self._run(ex)
        await self.settler.settle(ex, outcome, acker)
        return outcome

    async def _run(self, ex: Execution) -> Outcome:
        rejected = self._reject(ex)
        if rejected is not None:
            self.worker.record(ex, rejected)
            return rejected
        message = ex.message
        assert message is not None
        if message.firing is not None and self.ticks is not None:
            unrun = await self.ticks.admit(ex)
            if unrun is not None:
                return unrun
        if message.execution_key is not None and not ex.chained:
            return await self._admit(ex)
        return await self.worker.run(ex)

    def _reject(self, ex: Execution) -> Outcome | None:
        """Decode the message; a body that is not a job, or a job delivered too often
        (it may kill its node: poison), is buried with the reason."""
        try:
            ex.message = decode(ex.delivery.body)
        except DecodeError as e:
            log.error("burying message in %s-%s: %s", ex.partition, ex.queue, e, extra=ex.log_fields())
            return refused(str(e), self.worker.node)
        if ex.chained:
            ex.queue = ex.message.queue
        deliveries = ex.delivery.delivery_count
        if self.delivery_limit and deliveries >= self.delivery_limit and ex.message.job != WAKE_JOB:
            reason = (
                f"delivered {deliveries} times without an ack, the queue's delivery limit:"
                " the job may crash its node (poison message)"
            )
            log.error("burying job %s: %s", ex.message.id, reason, extra=ex.log_fields())
            return refused(reason, self.worker.node)
        return None

    async def _admit(self, ex: Execution) -> Outcome:
        """Hand a keyed job (or a wake) to its execution key."""
        assert ex.message is not None
        try:
            outcome, chain = await self.chains.admit(ex)
        except RogerError as e:
            if ex.message.job == WAKE_JOB:
                return DONE  # a wake is a hint: the nodes' scan wakes the key again
            log.warning(
                "cannot park job %s with execution key %s (%s); trying again in %ds",
                ex.message.id,
                ex.message.execution_key,
                e,
                PARK_AGAIN_DELAY,
                extra=ex.log_fields(),
            )
            return Outcome(Action.RETRY, ending="parked", message=ex.message, delay=PARK_AGAIN_DELAY)
        if chain is None:
            return outcome
        task = asyncio.ensure_future(self._run_chain(chain))
        return Outcome(outcome.action, outcome.ending, lingering=task)

    async def _run_chain(self, chain: Chain) -> None:
        """Run the waiting jobs of a key, one at a time, each settled before the next."""
        try:
            async with chain:
                async for delivery in chain:
                    ex = Execution(chain.partition, chain.queue, delivery, token=chain.token)
                    outcome = await self._run(ex)
                    await self.settler.settle(ex, outcome)
                    if outcome.lingering is not None:
                        await asyncio.wait({outcome.lingering})  # one at a time, threads included
        except Exception as e:  # the chain handed its key over on the way out
            log.debug("execution key %s of %s: chain ended early: %s", chain.key, chain.partition, e)
