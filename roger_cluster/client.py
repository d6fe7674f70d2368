"""Client: what applications and rogerctl use to enqueue jobs and run the cluster.

Enqueue touches only RabbitMQ (no etcd round trip for a plain job) and returns
after the publisher confirm. Partition commands write the partition map in
etcd; `start_partition` declares the queues first, so jobs can be enqueued as
soon as it returns, before any node has seen the partition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from .broker import Broker, Moved, Peeked
from .cluster import partitions as pmap
from .cluster.cancellations import DEFAULT_TTL as DEFAULT_CANCEL_TTL
from .cluster.cancellations import request_cancel
from .cluster.etcd import Etcd
from .cluster.membership import NodeInfo, list_nodes
from .cluster.partitions import PartitionSpec
from .codec import JobMessage, decode, encode
from .config import DEFAULT_AMQP_URL, DEFAULT_ETCD, DEFAULT_NAMESPACE, AmqpConfig, EtcdConfig
from .errors import DecodeError, JobError
from .job import Job
from .management import Management
from .names import buried_queue_name, check_partition, queue_name

ENQUEUE_WINDOW = 1000


@dataclass(frozen=True)
class QueueInfo:
    """One queue of a partition as the cluster sees it now."""

    name: str
    rabbitmq_queue: str
    concurrency: int
    ready: int | None
    unacked: int | None
    consumers: int | None


@dataclass(frozen=True)
class BuriedJob:
    """A job in a `.buried` queue, with the evidence of why it is there."""

    id: str | None
    job: str | None
    args: Any
    retry_count: int | None
    reason: str
    error_type: str | None
    traceback: str | None
    node: str | None
    failed_at: float | None

    @classmethod
    def from_peeked(cls, peeked: Peeked) -> BuriedJob:
        """Read a buried message; one that cannot be decoded still shows its reason."""
        headers = peeked.headers
        try:
            message: JobMessage | None = decode(peeked.body)
        except DecodeError:
            message = None
        return cls(
            id=message.id if message else peeked.properties.get("message_id"),
            job=message.job if message else peeked.properties.get("type"),
            args=message.args if message else None,
            retry_count=message.retry_count if message else None,
            reason=str(headers.get("x-roger-reason", "")),
            error_type=_text(headers.get("x-roger-error-type")),
            traceback=_text(headers.get("x-roger-traceback")),
            node=_text(headers.get("x-roger-node")),
            failed_at=float(headers["x-roger-failed-at"]) if "x-roger-failed-at" in headers else None,
        )


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


def _unburied(peeked: Peeked, routing_key: str) -> Moved:
    """A buried message made new again: evidence headers dropped, retry count reset."""
    headers = {k: v for k, v in peeked.headers.items() if not k.startswith(("x-roger-", "x-death"))}
    body = peeked.body
    with contextlib.suppress(DecodeError, JobError):
        body = encode(replace(decode(body), retry_count=0))
    return Moved(routing_key, body, {**peeked.properties, "headers": headers})


@dataclass(frozen=True)
class PartitionInfo:
    """A partition with the live state of its queues."""

    name: str
    queues: list[QueueInfo]


class Client:
    """Talks to the cluster. Use as `async with Client(...) as roger:`.

    Connections open on first use: enqueueing needs only RabbitMQ, listing
    nodes needs only etcd.
    """

    def __init__(
        self,
        amqp_url: str = DEFAULT_AMQP_URL,
        etcd: str = DEFAULT_ETCD,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        queue_type: str = "quorum",
        management_url: str | None = None,
        cancel_ttl: int = DEFAULT_CANCEL_TTL,
    ) -> None:
        self.cancel_ttl = cancel_ttl
        self.amqp_config = AmqpConfig(url=amqp_url, queue_type=queue_type)
        self.etcd_config = EtcdConfig.from_string(etcd, namespace)
        self._broker = Broker(self.amqp_config)
        self._etcd = Etcd(self.etcd_config)
        self._management = Management.for_amqp(amqp_url, management_url)
        self._vhost = unquote(urlsplit(amqp_url).path[1:]) or "/"
        self._broker_lock = asyncio.Lock()
        self._etcd_lock = asyncio.Lock()
        self._etcd_ready = False

    @property
    def namespace(self) -> str:
        """The etcd namespace of this cluster."""
        return self.etcd_config.namespace

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close both connections."""
        await self._broker.close()
        await self._etcd.close()
        self._etcd_ready = False

    async def broker(self) -> Broker:
        """The connected broker."""
        if not self._broker.is_connected:
            async with self._broker_lock:
                if not self._broker.is_connected:
                    await self._broker.connect()
        return self._broker

    async def etcd(self) -> Etcd:
        """The connected etcd client."""
        if not self._etcd_ready:
            async with self._etcd_lock:
                if not self._etcd_ready:
                    await self._etcd.connect()
                    self._etcd_ready = True
        return self._etcd

    # jobs

    async def enqueue(self, job: Job, partition: str, queue: str | None = None) -> str:
        """Publish `job` to `partition` and wait for RabbitMQ's confirm; returns the job id.

        Raises UnroutableJob if the partition or queue does not exist,
        JobError for args that cannot be sent, BrokerConnectionError if
        RabbitMQ cannot be reached.
        """
        return await self.enqueue_message(JobMessage.from_job(job, queue), partition)

    async def enqueue_message(self, message: JobMessage, partition: str) -> str:
        """Enqueue a prepared message (as `rogerctl job enqueue` does); returns its id."""
        broker = await self.broker()
        await broker.publish(message, check_partition(partition))
        return message.id

    async def enqueue_many(self, jobs: Iterable[Job], partition: str, queue: str | None = None) -> list[str]:
        """Enqueue many jobs with up to ENQUEUE_WINDOW confirms in flight at once.

        Returns once every job is confirmed. If one fails, the first error is
        raised after the rest were tried; jobs confirmed before it are queued.
        """
        check_partition(partition)
        messages = [JobMessage.from_job(job, queue) for job in jobs]
        broker = await self.broker()
        window = asyncio.Semaphore(ENQUEUE_WINDOW)

        async def send(message: JobMessage) -> None:
            async with window:
                await broker.publish(message, partition)

        results = await asyncio.gather(*(send(m) for m in messages), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [m.id for m in messages]

    # partitions

    async def start_partition(self, name: str, queues: Mapping[str, int]) -> PartitionSpec:
        """Create a partition or reconfigure its queues' concurrency.

        Queues are declared before the map is written, so a job enqueued after
        this returns is never unroutable. Queues missing from `queues` that the
        partition had before are no longer consumed; their messages stay.
        """
        spec = PartitionSpec(name, dict(queues))
        broker = await self.broker()
        etcd = await self.etcd()
        for queue in spec.queues:
            await broker.declare(spec.name, queue)
        await pmap.put_partition(etcd, self.namespace, spec)
        return spec

    async def stop_partition(self, name: str) -> None:
        """Remove a partition from the map: every node stops consuming its queues.

        The queues and their messages stay in RabbitMQ; starting the partition
        again resumes them. Raises UnknownPartition if it does not exist.
        """
        etcd = await self.etcd()
        await pmap.get_partition(etcd, self.namespace, name)
        await pmap.delete_partition(etcd, self.namespace, name)

    async def partitions(self) -> list[PartitionSpec]:
        """Every partition in the map, sorted by name."""
        current, _ = await pmap.read_map(await self.etcd(), self.namespace)
        return [current[name] for name in sorted(current)]

    async def partition(self, name: str) -> PartitionInfo:
        """A partition with ready / unacked / consumer counts per queue."""
        spec = await pmap.get_partition(await self.etcd(), self.namespace, name)
        broker = await self.broker()
        infos = []
        for queue, concurrency in spec.queues.items():
            rabbit_name = queue_name(name, queue)
            stats = await broker.stats(rabbit_name)
            unacked = await self._management.unacked(rabbit_name, self._vhost)
            infos.append(
                QueueInfo(
                    name=queue,
                    rabbitmq_queue=rabbit_name,
                    concurrency=concurrency,
                    ready=stats.ready if stats else None,
                    unacked=unacked,
                    consumers=stats.consumers if stats else None,
                )
            )
        return PartitionInfo(name, infos)

    async def cancel(self, partition: str, job_id: str) -> None:
        """Cancel a job wherever it is: dropped if still queued, stopped if running.

        The request lives in etcd for `cancel_ttl` seconds. Cancelling an
        unknown or finished job is not an error.
        """
        etcd = await self.etcd()
        await request_cancel(etcd, self.namespace, partition, job_id, self.cancel_ttl)

    # buried jobs

    async def buried(self, partition: str, queue: str, limit: int = 100) -> list[BuriedJob]:
        """Up to `limit` buried jobs of a queue, oldest first, left where they are."""
        broker = await self.broker()
        peeked = await broker.peek(buried_queue_name(partition, queue), limit)
        return [BuriedJob.from_peeked(p) for p in peeked]

    async def retry_buried(self, partition: str, queue: str, job_ids: Collection[str] | None = None) -> int:
        """Put buried jobs (all, or those in `job_ids`) back on their queue; returns how many."""
        broker = await self.broker()
        target = queue_name(partition, queue)
        wanted = None if job_ids is None else set(job_ids)

        def choose(peeked: Peeked) -> Moved | None:
            if wanted is not None and peeked.properties.get("message_id") not in wanted:
                return None
            return _unburied(peeked, target)

        return await broker.move(buried_queue_name(partition, queue), choose)

    async def purge_buried(self, partition: str, queue: str) -> int:
        """Delete every buried job of a queue; returns how many went."""
        broker = await self.broker()
        return await broker.purge(buried_queue_name(partition, queue))

    # nodes

    async def nodes(self) -> Sequence[NodeInfo]:
        """The live nodes, sorted by name."""
        return await list_nodes(await self.etcd(), self.namespace)
