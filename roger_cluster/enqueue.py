"""Enqueueing: how a job message gets into its partition, with its keys kept true.

A plain job is one confirmed publish and no etcd round trip: the hot path.
A job with a queue key takes the key in etcd first (DuplicateJob if another
queued job holds it) and gives it back if the publish fails, so a key never
outlives a job that was not queued. A job with an execution key is parked in
its key's waiting queue (`keyed.park`, the protocol the node uses too).
`Enqueuer.many` keeps up to `ENQUEUE_WINDOW` confirms in flight, and the jobs
of one execution key in their order.

A delayed job (`When`) is published through the namespace's delay levels to
its partition queue (`broker/delaying.py`), keys and all: its queue key is
taken now (a scheduled job counts as queued), and a job with an execution key
is parked by the node it reaches once due, as a retried one is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from .broker import Broker
from .cluster import queuekeys
from .cluster.etcd import Etcd
from .cluster.execkeys import ExecKeys
from .codec import JobMessage
from .errors import UnroutableJob
from .keyed import park
from .names import check_partition, queue_name

ENQUEUE_WINDOW = 1000


@dataclass(frozen=True)
class When:
    """When a delayed job is due: `delay` seconds after its publish, or at `at` (Unix time).
    Checked by the caller (`delays.check_delay`, `delays.check_at`)."""

    delay: float | None = None
    at: float | None = None

    def due(self) -> float:
        """The due time of a job published now."""
        return self.at if self.at is not None else time.time() + (self.delay or 0.0)


class Enqueuer:
    """Publishes job messages for the client; connects on first use (`broker`, `etcd`
    are the client's getters), so constructing it does no I/O."""

    def __init__(
        self, broker: Callable[[], Awaitable[Broker]], etcd: Callable[[], Awaitable[Etcd]], namespace: str
    ) -> None:
        self._broker = broker
        self._etcd = etcd
        self._namespace = namespace
        self._known_queues: set[str] = set()
        self._checking = asyncio.Lock()

    async def one(self, message: JobMessage, partition: str, when: When | None = None) -> str:
        """Enqueue one message (delayed, with `when`); returns its id once RabbitMQ confirmed it."""
        check_partition(partition)
        broker = await self._broker()
        if message.queue_key is None and message.execution_key is None and when is None:
            await broker.publish(message, partition)  # the hot path: no etcd
            return message.id
        if when is not None:
            await self._check_queue(broker, message, partition)
        etcd = await self._etcd() if message.queue_key is not None or when is None else None
        if message.queue_key is not None:
            assert etcd is not None
            await queuekeys.take(etcd, self._namespace, partition, message.queue_key, message.id)
        try:
            if when is not None:
                await self._delayed(broker, message, partition, when)
            elif message.execution_key is None:
                await broker.publish(message, partition)
            else:
                assert etcd is not None
                await self._park(broker, etcd, message, partition)
        except BaseException:
            if message.queue_key is not None:
                assert etcd is not None
                await queuekeys.release(etcd, self._namespace, partition, message.queue_key, message.id)
            raise
        return message.id

    async def many(
        self, messages: Sequence[JobMessage], partition: str, when: When | None = None
    ) -> list[str]:
        """Enqueue every message (each delayed by `when`), up to ENQUEUE_WINDOW at once; the
        first error is raised after the rest were tried (those confirmed before it are queued)."""
        check_partition(partition)
        units = _units(messages)
        pending = iter(units)
        errors: list[BaseException] = []

        async def sender() -> None:  # a few senders, not one task per job: memory stays flat
            for unit in pending:
                for message in unit:
                    try:
                        await self.one(message, partition, when)
                    except Exception as e:
                        errors.append(e)

        await asyncio.gather(*(sender() for _ in range(min(ENQUEUE_WINDOW, len(units)))))
        if errors:
            raise errors[0]
        return [m.id for m in messages]

    async def _delayed(self, broker: Broker, message: JobMessage, partition: str, when: When) -> None:
        """Publish a job through the delay levels, due at `when`; `perform` reads its due
        time as `context.scheduled_at`. A due time already past publishes it at once (a job
        with an execution key then goes to its partition queue, to be parked there)."""
        due = when.due()
        await broker.publish_delayed(replace(message, scheduled_at=due), partition, self._namespace, due)

    async def _check_queue(self, broker: Broker, message: JobMessage, partition: str) -> None:
        """UnroutableJob unless the job's partition queue exists (once per queue): a job
        that waits first, or waits its turn, would find out too late."""
        main = queue_name(partition, message.queue)
        if main in self._known_queues:
            return
        async with self._checking:  # the first jobs of `many` ask once, not a thousand times
            if main not in self._known_queues:
                if await broker.stats(main) is None:
                    raise UnroutableJob(f"publishing job {message.id} to {main}: no queue takes it")
                self._known_queues.add(main)

    async def _park(self, broker: Broker, etcd: Etcd, message: JobMessage, partition: str) -> None:
        """Park the job in its key's waiting queue (`keyed.park`): counted, published, and
        the key woken if nobody holds it; nothing is left behind if it raises."""
        await self._check_queue(broker, message, partition)
        await park(broker, ExecKeys(etcd, self._namespace), message, partition)


def _units(messages: Sequence[JobMessage]) -> list[list[JobMessage]]:
    """Work units: one plain job, or all jobs of one execution key (kept in order)."""
    serial: dict[str, list[JobMessage]] = {}
    units: list[list[JobMessage]] = []
    for m in messages:
        if m.execution_key is None:
            units.append([m])
        elif m.execution_key not in serial:
            serial[m.execution_key] = [m]
            units.append(serial[m.execution_key])
        else:
            serial[m.execution_key].append(m)
    return units
