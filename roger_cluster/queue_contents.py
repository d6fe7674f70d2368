"""What is in a partition queue or its `.buried` queue, for the client: peeked at, put
back from burial, purged, with queue keys kept true.

A peek (`Broker.peek`) takes messages unacked and gives them all back, and
each is shown as a job (`QueuedJob`, `BuriedJob`); a message that does not
decode is still shown, with its id from the AMQP properties and why it cannot
be read: a peek must never hide a message. A queue key means one queued job,
so every operation that moves or deletes messages here takes or releases
keys on the way: a buried job put back takes its key again (burying freed
it), a purged job frees its own. The evidence a buried job carries is read
and dropped through `evidence.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

from .broker import Broker, Moved, OnCount, Peeked
from .cluster import queuekeys
from .cluster.etcd import Etcd
from .cluster.schedules import release_tick
from .codec import JobMessage, decode, encode
from .errors import ConfigError, DecodeError, DuplicateJob, JobError, UnknownQueue
from .evidence import Evidence, without_evidence
from .names import buried_queue_name, check_partition, check_queue, queue_name


@dataclass(frozen=True)
class BuriedJob:
    """A job in a `.buried` queue, with the evidence of why it is there."""

    id: str | None
    """The job id; None if the body could not be read."""
    job: str | None
    """The job class, `module:Class`; None if the body could not be read."""
    args: Any
    """The job's arguments."""
    retry_count: int | None
    """Retries before it was buried."""
    reason: str
    """Why it was buried (failed, poison, undecodable...)."""
    error_type: str | None
    """The exception class of its last failure, if any."""
    traceback: str | None
    """The traceback of its last failure, if any."""
    node: str | None
    """The node that buried it, if known."""
    failed_at: float | None
    """When it was buried (Unix time), if known."""

    @classmethod
    def from_peeked(cls, peeked: Peeked) -> BuriedJob:
        """Read a buried message; one that cannot be decoded still shows its reason."""
        try:
            message: JobMessage | None = decode(peeked.body)
        except DecodeError:
            message = None
        evidence = Evidence.from_headers(peeked.headers)
        return cls(
            id=message.id if message else peeked.properties.get("message_id"),
            job=message.job if message else peeked.properties.get("type"),
            args=message.args if message else None,
            retry_count=message.retry_count if message else None,
            reason=evidence.reason,
            error_type=evidence.error_type,
            traceback=evidence.traceback,
            node=evidence.node,
            failed_at=evidence.failed_at,
        )


@dataclass(frozen=True)
class QueuedJob:
    """A job waiting in a partition queue, as a peek saw it."""

    id: str | None
    """The job id; None if the body could not be read."""
    job: str | None
    """The job class, `module:Class`; None if the body could not be read."""
    args: Any
    """The job's arguments."""
    retry_count: int | None
    """Retries so far."""
    enqueued_at: float | None
    """When it was first enqueued (Unix time)."""
    queue_key: str | None
    """Its queue key, if any."""
    execution_key: str | None
    """Its execution key, if any."""
    error: str | None  # why the body could not be read; the message is still there
    """Why the body could not be read; the message is still there."""

    @classmethod
    def from_peeked(cls, peeked: Peeked) -> QueuedJob:
        """Read a queued message; one that cannot be decoded still shows its id and why."""
        try:
            message = decode(peeked.body)
        except DecodeError as e:
            properties = peeked.properties
            return cls(
                id=properties.get("message_id"),
                job=properties.get("type"),
                args=None,
                retry_count=None,
                enqueued_at=None,
                queue_key=None,
                execution_key=None,
                error=str(e),
            )
        return cls(
            message.id,
            message.job,
            message.args,
            message.retry_count,
            message.enqueued_at or None,
            message.queue_key,
            message.execution_key,
            None,
        )


def queue_key_of(peeked: Peeked) -> str | None:
    """The queue key of a peeked job, if it has one (and is one of ours)."""
    try:
        return decode(peeked.body).queue_key
    except DecodeError:
        return None


def unburied(peeked: Peeked, routing_key: str) -> Moved:
    """A buried message made new again: evidence headers dropped, retry count reset, and
    a schedule tick's firing nonce dropped (its tick record went when it was buried, so
    the run-once check would drop it: an operator's retry runs it, its tick kept)."""
    body = peeked.body
    with contextlib.suppress(DecodeError, JobError):
        body = encode(replace(decode(body), retry_count=0, firing=None))
    headers = without_evidence(peeked.headers)
    return Moved(routing_key, body, {**peeked.properties, "headers": headers})


class QueueContents:
    """The jobs in the queues of a cluster's partitions; the client's `queued`, `buried`,
    `retry_buried`, `purge_queue` and `purge_buried` delegate here. Connects on first
    use (`broker`, `etcd` are the client's getters); constructing it does no I/O."""

    def __init__(
        self, broker: Callable[[], Awaitable[Broker]], etcd: Callable[[], Awaitable[Etcd]], namespace: str
    ) -> None:
        self._broker = broker
        self._etcd = etcd
        self._namespace = namespace

    async def queued(self, partition: str, queue: str, limit: int) -> list[QueuedJob]:
        """Up to `limit` jobs of a partition queue, next first, peeked.

        Where the peeked messages go back is RabbitMQ's requeue (see
        `Broker.peek`: a quorum queue puts them behind the jobs not peeked) and
        they are marked redelivered. Jobs of an execution key waiting for their
        turn are in their key's waiting queue, not here.
        """
        if limit < 1:
            raise ConfigError(f"limit must be at least 1, got {limit}")
        broker = await self._broker()
        name = await _existing(broker, partition, queue, queue_name)
        return [QueuedJob.from_peeked(p) for p in await broker.peek(name, limit)]

    async def buried(self, partition: str, queue: str, limit: int) -> list[BuriedJob]:
        """Up to `limit` buried jobs of a queue, oldest first, peeked."""
        broker = await self._broker()
        peeked = await broker.peek(await _existing(broker, partition, queue, buried_queue_name), limit)
        return [BuriedJob.from_peeked(p) for p in peeked]

    async def retry_buried(
        self,
        partition: str,
        queue: str,
        job_ids: Collection[str] | None,
        on_progress: OnCount | None,
        on_key_held: Callable[[str, str], None] | None,
    ) -> int:
        """Move buried jobs (all, or those in `job_ids`) back to their queue, made new again.

        A job with a queue key takes its key again first; if another queued job
        holds it meanwhile, the buried job stays buried (so the key still means
        one queued job) and `on_key_held(job_id, key)` hears of it.
        """
        broker = await self._broker()
        source = await _existing(broker, partition, queue, buried_queue_name)
        target = queue_name(partition, queue)
        wanted = None if job_ids is None else set(job_ids)

        async def choose(peeked: Peeked) -> Moved | None:
            job_id = peeked.properties.get("message_id")
            if wanted is not None and job_id not in wanted:
                return None
            key = queue_key_of(peeked)
            if key is not None and job_id:
                try:  # a move that fails after this leaves the key to this job: a retry takes it again
                    await queuekeys.take(await self._etcd(), self._namespace, partition, key, str(job_id))
                except DuplicateJob:
                    if on_key_held is not None:
                        on_key_held(str(job_id), key)
                    return None
            return unburied(peeked, target)

        return await broker.move(source, choose, on_progress)

    async def purge(self, partition: str, queue: str, on_progress: OnCount | None = None) -> int:
        """Delete every ready job of a partition queue, freeing their queue keys."""
        broker = await self._broker()
        name = await _existing(broker, partition, queue, queue_name)
        return await broker.drop_all(name, self._key_releaser(partition), on_progress)

    async def purge_buried(self, partition: str, queue: str) -> int:
        """Delete every buried job of a queue. A buried job normally freed its queue key when
        it was buried; one that RabbitMQ dead-lettered by itself may still hold it: freed here."""
        broker = await self._broker()
        name = await _existing(broker, partition, queue, buried_queue_name)
        return await broker.drop_all(name, self._key_releaser(partition))

    async def delete_buried(self, partition: str, queue: str, job_ids: Collection[str]) -> int:
        """Delete the buried jobs of a queue whose ids are in `job_ids`; the others stay.
        A queue key or schedule tick one of them still holds is freed, as `purge_buried` does."""
        broker = await self._broker()
        name = await _existing(broker, partition, queue, buried_queue_name)
        wanted, release = set(job_ids), self._key_releaser(partition)

        async def take(peeked: Peeked) -> bool:
            if peeked.properties.get("message_id") not in wanted:
                return False
            await release(peeked)
            return True

        # `_take_each` is the building block of `move` and `drop_all` (take some, give the rest
        # back); the broker has no public "drop these" yet, and broker/ was not ours to change.
        return await broker._take_each(name, take, f"deleting buried jobs of {name}")

    def _key_releaser(self, partition: str) -> Callable[[Peeked], Awaitable[None]]:
        """Frees the queue key of a job that is about to be deleted, if it still holds it,
        and the tick record of a schedule's job, if it still names that copy."""

        async def release_key(peeked: Peeked) -> None:
            with contextlib.suppress(DecodeError):
                message = decode(peeked.body)
                if message.queue_key is not None:
                    etcd = await self._etcd()
                    await queuekeys.release(etcd, self._namespace, partition, message.queue_key, message.id)
                if message.firing is not None and message.schedule is not None:
                    tick = int(message.scheduled_at or 0)
                    etcd = await self._etcd()
                    await release_tick(etcd, self._namespace, message.schedule, tick, message.firing)

        return release_key


async def _existing(broker: Broker, partition: str, queue: str, naming: Callable[[str, str], str]) -> str:
    """The RabbitMQ queue `naming(partition, queue)`; UnknownQueue if it does not exist."""
    name = naming(check_partition(partition), check_queue(queue))
    if await broker.stats(name) is None:
        raise UnknownQueue(f"partition {partition!r} has no queue {queue!r} (no RabbitMQ queue {name})")
    return name
