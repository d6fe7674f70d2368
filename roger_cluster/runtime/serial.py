"""Coordination on the job path: queue keys and serialized execution.

The worker hands a message here when it carries a key:

- A job with an execution key that arrives in a partition queue is *parked*:
  published to its key's waiting queue (FIFO, in RabbitMQ), counted in etcd,
  then acked. If no node holds the key's lock, this node takes it and runs
  the key's *chain*.
- A *wake* message (published by an enqueue or by the janitor when a key has
  waiting jobs and no holder) makes the node that gets it take the lock and
  run the chain.
- A chain takes the waiting jobs one by one with basic.get, runs each under
  the lock (its create revision is the job's fencing token), acks it and
  counts it off; when none waits it drops the lock in the same etcd
  transaction that checks the count. The chain holds the consumer slot of the
  message that started it, so it counts against the queue's concurrency.

Plain jobs never come here: they cost no etcd round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika

from ..broker import Broker
from ..cluster import keys
from ..cluster.etcd import WatchEvent
from ..cluster.execkeys import ExecKeys
from ..cluster.queuekeys import release
from ..cluster.watch import follow_prefix
from ..codec import JobMessage, decode
from ..errors import RogerError
from ..job import new_job_id
from ..names import exec_waiting_queue_name, key_id
from .delivery import Delivery
from .settle import settle
from .worker import DONE, Action, Outcome

log = logging.getLogger(__name__)

WAKE_JOB = "roger_cluster:wake"  # a wake message's job name; never a class
# Counted jobs not visible in the waiting queue yet: retry a little, then hand over.
MAX_EMPTY_GETS = 20
TEND_INTERVAL = 30.0  # seconds between scans for keys nobody wakes

RunJob = Callable[[str, str, bytes, int], Awaitable[Outcome]]


def wake_message(queue: str, execution_key: str) -> JobMessage:
    """The message that makes a node run the waiting jobs of `execution_key`."""
    return JobMessage(new_job_id(), WAKE_JOB, None, queue, execution_key=key_id(execution_key))


class Coordinator:
    """Queue-key release and execution-key chains for one node."""

    def __init__(self, broker: Broker, exec_keys: ExecKeys, node: str, lease: Callable[[], int]) -> None:
        self.broker = broker
        self.exec_keys = exec_keys
        self.node = node
        self._lease = lease
        self.stopping = False
        self.run_job: RunJob | None = None  # the worker's serialized entry, set by the worker

    def serve(self, run_job: RunJob) -> None:
        """Learn how to run a job whose execution key this node holds (the worker's)."""
        self.run_job = run_job

    async def release_queue_key(self, partition: str, message: JobMessage) -> None:
        """The job left its queue for good: free its queue key."""
        if message.queue_key is not None:
            await release(
                self.exec_keys.etcd, self.exec_keys.namespace, partition, message.queue_key, message.id
            )

    async def admit(self, partition: str, message: JobMessage) -> Outcome:
        """Handle a wake, or park a keyed job; the returned outcome acks the delivery."""
        assert message.execution_key is not None
        key = message.execution_key
        if message.job != WAKE_JOB:
            await self.broker.publish_waiting(message, partition)
            if await self.exec_keys.add_waiting(partition, key, message.queue):
                return DONE  # the holder will run it
        token = await self.exec_keys.acquire(partition, key, self._lease(), self.node.encode())
        if token is None:
            return DONE
        chain = asyncio.ensure_future(self._chain(partition, key, token))
        return Outcome(Action.ACK, lingering=chain)

    async def wake(self, partition: str, queue: str, key: str) -> None:
        """Publish a wake for a key that has waiting jobs and no holder."""
        await self.broker.publish(wake_message(queue, key), partition)

    async def _chain(self, partition: str, key: str, token: int) -> None:
        name = exec_waiting_queue_name(partition, key)
        channel = await self.broker.channel()
        try:
            queue = await channel.get_queue(name, ensure=False)
            await self._run_waiting(partition, key, token, queue)
        except Exception:
            log.exception("execution key %s of %s: chain failed; releasing the key", key, partition)
            try:
                await self._hand_over(partition, key)
            except RogerError as e:  # the lock goes with our lease; the janitors wake the key
                log.warning("execution key %s of %s: cannot hand over (%s)", key, partition, e)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _run_waiting(self, partition: str, key: str, token: int, queue: Any) -> None:
        empty_gets = 0
        while not self.stopping:
            delivery = await queue.get(fail=False)
            if delivery is None:
                if await self.exec_keys.release_if_idle(partition, key):
                    return
                empty_gets += 1
                if empty_gets > MAX_EMPTY_GETS:
                    log.warning("execution key %s of %s: counted jobs not in its queue", key, partition)
                    break
                await asyncio.sleep(0.05 * empty_gets)
                continue
            empty_gets = 0
            await self._run_one(partition, key, token, delivery)
        await self._hand_over(partition, key)

    async def _run_one(
        self, partition: str, key: str, token: int, delivery: aio_pika.abc.AbstractIncomingMessage
    ) -> None:
        assert self.run_job is not None
        queue = decode(delivery.body).queue
        outcome = await self.run_job(partition, queue, delivery.body, token)
        await settle(self.broker, partition, queue, Delivery.from_message(delivery), outcome)
        if outcome.action is not Action.REQUEUE:
            await self.exec_keys.finish_one(partition, key)
        if outcome.lingering is not None:
            await asyncio.wait({outcome.lingering})  # one at a time, threads included

    async def _hand_over(self, partition: str, key: str) -> None:
        """Drop the lock (shutdown, trouble) and wake the key if jobs still wait."""
        await self.exec_keys.release(partition, key)
        waiting = await self.exec_keys.waiting(partition, key)
        if waiting.count > 0 and waiting.queue:
            await self.wake(partition, waiting.queue, key)

    async def tend(self, interval: float = TEND_INTERVAL) -> None:
        """Wake keys that have waiting jobs and no holder. Runs forever.

        A holder that died leaves waiting jobs behind when its lease expires:
        the watch on the locks sees the delete. An enqueuer that died between
        counting its job and publishing the wake leaves no event: the
        periodic scan finds those.
        """

        async def scan() -> None:
            try:
                for partition, key, queue in await self.exec_keys.orphans():
                    log.info(
                        "execution key %s of %s has waiting jobs and no holder; waking it", key, partition
                    )
                    await self.wake(partition, queue, key)
            except RogerError as e:
                log.warning("cannot check execution keys: %s", e)

        async def on_reset(_: dict[str, bytes]) -> None:
            await scan()

        async def on_events(events: list[WatchEvent]) -> None:
            if any(event.value is None for event in events):
                await scan()

        async def periodically() -> None:
            while True:
                await asyncio.sleep(interval)
                await scan()

        prefix = keys.exec_locks_prefix(self.exec_keys.namespace)
        await asyncio.gather(follow_prefix(self.exec_keys.etcd, prefix, on_reset, on_events), periodically())
