"""Client: what applications and rogerctl use to enqueue jobs and run the cluster.

Enqueue touches only RabbitMQ (no etcd round trip for a plain job) and returns
after the publisher confirm. Partition commands write the partition map in
etcd; `ensure_partition` (create if absent: what an app calls at start) and
`set_partition` (create or replace: what an operator does) declare the queues
first, so jobs can be enqueued as soon as they return, before any node has
seen the partition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from . import control
from .broker import Broker, Moved, OnCount, Peeked
from .cluster import audit, keys, queuekeys
from .cluster import drain as drains
from .cluster import partitions as pmap
from .cluster import paused as pause_state
from .cluster.audit import Finding
from .cluster.cancellations import DEFAULT_TTL as DEFAULT_CANCEL_TTL
from .cluster.cancellations import request_cancel
from .cluster.drain import DEFAULT_DRAIN_TIMEOUT, OnProgress
from .cluster.etcd import Etcd
from .cluster.execkeys import ExecKeys
from .cluster.membership import NodeInfo, list_nodes
from .cluster.partitions import PartitionSpec
from .codec import JobMessage, decode
from .config import (
    DEFAULT_AMQP_URL,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_ETCD,
    DEFAULT_NAMESPACE,
    AmqpConfig,
    EtcdConfig,
)
from .errors import (
    ConfigError,
    DecodeError,
    DuplicateJob,
    InvalidEntry,
    UnknownPartition,
    UnknownQueue,
    UnroutableJob,
)
from .job import Job
from .keyed import park
from .management import ConsumerInfo, Management, ManagementError, QueueRates
from .names import buried_queue_name, check_partition, check_queue, queue_name
from .peeked_jobs import BuriedJob, QueuedJob, queue_key_of, unburied
from .placement import NodeProfile, runs_on

ENQUEUE_WINDOW = 1000


@dataclass(frozen=True, order=True)
class NodeConsumer:
    """A consumer on a partition queue: the node it belongs to and its prefetch."""

    node: str  # its connection's name; a node names its connection after itself
    prefetch: int


def node_consumers(consumers: Iterable[ConsumerInfo], connections: Mapping[str, str]) -> list[NodeConsumer]:
    """The consumers of one queue the management API lists, as nodes, each live one once.

    The API's consumer records outlive some consumers: one whose channel is
    closed stays (without channel details) until RabbitMQ's stats are collected,
    and one that RabbitMQ cancelled (its queue deleted) stays while its channel
    lives (RabbitMQ 3.10). A node consumes a queue once per channel, so the
    consumers of a queue are counted once per open channel.
    """
    by_channel: dict[str, ConsumerInfo] = {}
    for c in consumers:
        if c.channel_name is not None and c.connection_name is not None:
            by_channel.setdefault(c.channel_name, c)
    return sorted(
        NodeConsumer(connections.get(c.connection_name or "", c.connection_name or "?"), c.prefetch_count)
        for c in by_channel.values()
    )


def placed(spec: PartitionSpec, nodes: Iterable[NodeInfo]) -> list[str]:
    """The live `nodes` that consume the partition's queues while not paused, by name."""
    if spec.draining:
        return []
    return sorted(n.name for n in nodes if runs_on(spec, NodeProfile(n.name, frozenset(n.labels))))


@dataclass(frozen=True)
class QueueInfo:
    """One queue of a partition as the cluster sees it now.

    None means "cannot tell": unacked counts and consumers per node come from
    the management API, which may be unreachable (and lags by its stats interval).
    """

    name: str
    rabbitmq_queue: str
    concurrency: int
    ready: int | None
    unacked: int | None
    consumers: int | None
    paused: bool | None = None
    buried: int | None = None
    consumer_nodes: list[NodeConsumer] | None = None
    # The live nodes the placement gives the queue to: those that consume it
    # unless it is paused (its partition's `nodes` and `labels`; none while draining).
    placed_on: list[str] | None = None


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
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
        management_url: str | None = None,
        cancel_ttl: int = DEFAULT_CANCEL_TTL,
        amqp_config: AmqpConfig | None = None,
        etcd_config: EtcdConfig | None = None,
    ) -> None:
        """Connection settings as strings, or whole configs (`amqp_config`,
        `etcd_config`: TLS, etcd auth) which then take precedence."""
        self.cancel_ttl = cancel_ttl
        self.amqp_config = amqp_config or AmqpConfig(
            url=amqp_url, queue_type=queue_type, delivery_limit=delivery_limit
        )
        self.etcd_config = etcd_config or EtcdConfig.from_string(etcd, namespace)
        self._broker = Broker(self.amqp_config)
        self._etcd = Etcd(self.etcd_config)
        first_broker = self.amqp_config.urls[0]
        self._management = Management.for_amqp(first_broker, management_url)
        self._vhost = unquote(urlsplit(first_broker).path[1:]) or "/"
        self._broker_lock = asyncio.Lock()
        self._etcd_lock = asyncio.Lock()
        self._etcd_ready = False
        self._known_queues: set[str] = set()

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
        """Enqueue a prepared message (as `rogerctl job enqueue` does); returns its id.

        A plain job is one confirmed publish. A job with a queue key first takes
        the key in etcd (DuplicateJob if held) and gives it back if the publish
        fails; a job with an execution key goes to its key's waiting queue.
        """
        check_partition(partition)
        broker = await self.broker()
        if message.queue_key is None and message.execution_key is None:
            await broker.publish(message, partition)  # the hot path: no etcd
            return message.id
        etcd = await self.etcd()
        if message.queue_key is not None:
            await queuekeys.take(etcd, self.namespace, partition, message.queue_key, message.id)
        try:
            if message.execution_key is None:
                await broker.publish(message, partition)
            else:
                await self._enqueue_serialized(broker, etcd, message, partition)
        except BaseException:
            if message.queue_key is not None:
                await queuekeys.release(etcd, self.namespace, partition, message.queue_key, message.id)
            raise
        return message.id

    async def _enqueue_serialized(
        self, broker: Broker, etcd: Etcd, message: JobMessage, partition: str
    ) -> None:
        """Park the job in its key's waiting queue (`keyed.park`): counted, published, and
        the key woken if nobody holds it; nothing is left behind if it raises."""
        main = queue_name(partition, message.queue)
        if main not in self._known_queues:
            if await broker.stats(main) is None:
                raise UnroutableJob(f"publishing job {message.id} to {main}: no queue takes it")
            self._known_queues.add(main)
        await park(broker, ExecKeys(etcd, self.namespace), message, partition)

    async def enqueue_many(self, jobs: Iterable[Job], partition: str, queue: str | None = None) -> list[str]:
        """Enqueue many jobs with up to ENQUEUE_WINDOW confirms in flight at once.

        Returns once every job is confirmed. If one fails, the first error is
        raised after the rest were tried; jobs confirmed before it are queued.
        """
        check_partition(partition)
        messages = [JobMessage.from_job(job, queue) for job in jobs]
        # Work units: one plain job, or all jobs of one execution key (kept in order).
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
        pending = iter(units)
        errors: list[BaseException] = []

        async def sender() -> None:  # a few senders, not one task per job: memory stays flat
            for unit in pending:
                for message in unit:
                    try:
                        await self.enqueue_message(message, partition)
                    except Exception as e:
                        errors.append(e)

        await asyncio.gather(*(sender() for _ in range(min(ENQUEUE_WINDOW, len(units)))))
        if errors:
            raise errors[0]
        return [m.id for m in messages]

    # partitions

    async def ensure_partition(
        self,
        name: str,
        queues: Mapping[str, int],
        *,
        nodes: Collection[str] = (),
        labels: Collection[str] = (),
    ) -> PartitionSpec:
        """Create the partition if it does not exist; never change one that does.

        This is the one to call at application start: concurrency, placement,
        a drain in progress and queues an operator changed since (`rogerctl
        partition start`, `partition stop --drain`) stay as they are. Returns
        the spec in force: the one given if the partition was created, else
        the one already in the map (compare them to notice a difference).
        Creating is one etcd create-if-absent transaction, so of several apps
        starting at once exactly one writes. As with `set_partition`, the queues
        are declared before the map is written. Raises ConfigError if the
        partition's entry in etcd does not decode (nodes ignore it; `rogerctl
        partition stop NAME` removes it).
        """
        spec = PartitionSpec(name, dict(queues), tuple(nodes), tuple(labels))
        etcd = await self.etcd()
        existing = await pmap.find_partition(etcd, self.namespace, spec.name)
        if existing is not None:
            return existing
        broker = await self.broker()
        for queue in spec.queues:
            await broker.declare(spec.name, queue)
        return await pmap.create_partition(etcd, self.namespace, spec)

    async def set_partition(
        self,
        name: str,
        queues: Mapping[str, int],
        *,
        nodes: Collection[str] = (),
        labels: Collection[str] = (),
    ) -> PartitionSpec:
        """Create a partition or replace it: queues, concurrency, placement.

        What `rogerctl partition start` does; an operator's tool, not an app's
        boot step (an app calls `ensure_partition`, which leaves an existing
        partition alone). Queues are declared before the map is written, so a
        job enqueued after this returns is never unroutable. Queues missing
        from `queues` that the partition had before are no longer consumed;
        their messages stay. `nodes` and `labels` limit the nodes that consume
        it (a node must be named and carry every label; empty: every node).
        The whole spec is replaced: setting a draining partition ends the drain.
        """
        spec = PartitionSpec(name, dict(queues), tuple(nodes), tuple(labels))
        broker = await self.broker()
        etcd = await self.etcd()
        for queue in spec.queues:
            await broker.declare(spec.name, queue)
        await pmap.put_partition(etcd, self.namespace, spec)
        return spec

    async def start_partition(
        self,
        name: str,
        queues: Mapping[str, int],
        *,
        nodes: Collection[str] = (),
        labels: Collection[str] = (),
    ) -> PartitionSpec:
        """`set_partition` under its former name, kept for existing code: it replaces
        what an operator changed. At application start, call `ensure_partition`."""
        return await self.set_partition(name, queues, nodes=nodes, labels=labels)

    async def partition_spec(self, name: str) -> PartitionSpec:
        """The partition as the map holds it; UnknownPartition if it is not there."""
        return await pmap.get_partition(await self.etcd(), self.namespace, check_partition(name))

    async def stop_partition(
        self,
        name: str,
        *,
        drain: bool = False,
        timeout: float = DEFAULT_DRAIN_TIMEOUT,
        on_progress: OnProgress | None = None,
    ) -> str | None:
        """Remove a partition from the map: every node stops consuming its queues.

        The queues and their messages stay in RabbitMQ; starting the partition
        again resumes them. Raises UnknownPartition if it does not exist.
        An entry that does not decode (nodes ignore it) is removed all the same,
        without a drain, and the reason it was invalid is returned; else None.

        With `drain`, the partition is first marked draining and removed only
        once every live node runs none of its jobs (see `cluster/drain.py`);
        `on_progress` hears which nodes are done. Raises DrainTimeout after
        `timeout` seconds (the partition stays draining; call again to keep
        waiting) and DrainAbandoned if it is started again meanwhile.
        """
        etcd = await self.etcd()
        invalid: str | None = None
        try:
            if drain:
                await drains.start_drain(etcd, self.namespace, name)
                await drains.finish_drain(etcd, self.namespace, name, timeout, on_progress)
                return None
            await pmap.get_partition(etcd, self.namespace, name)
        except InvalidEntry as e:
            invalid = str(e)
        await pmap.delete_partition(etcd, self.namespace, name)
        await drains.clear_markers(etcd, self.namespace, name)  # of a drain this stop cut short
        return invalid

    async def partitions(self) -> list[PartitionSpec]:
        """Every partition in the map, sorted by name."""
        current, _ = await pmap.read_map(await self.etcd(), self.namespace)
        return [current[name] for name in sorted(current)]

    # pause, resume, purge

    async def pause_queue(self, partition: str, queue: str) -> None:
        """Pause a queue on every node: its running jobs finish, its messages wait.

        Persisted in etcd until resumed. Raises UnknownPartition if the
        partition or its queue is not in the map.
        """
        etcd = await self.etcd()
        await self._queue_in_map(etcd, partition, queue)
        await pause_state.pause(etcd, self.namespace, partition, queue)

    async def resume_queue(self, partition: str, queue: str) -> bool:
        """Resume a paused queue on every node; False if it was not paused.

        A paused queue of a stopped partition can be resumed (the pause outlives
        the stop). A queue neither paused nor in the map raises UnknownPartition
        (UnknownQueue if only the queue is missing), as `pause_queue` does.
        """
        etcd = await self.etcd()
        if await pause_state.resume(etcd, self.namespace, partition, queue):
            return True
        await self._queue_in_map(etcd, partition, queue)
        return False

    async def _queue_in_map(self, etcd: Etcd, partition: str, queue: str) -> PartitionSpec:
        spec = await pmap.get_partition(etcd, self.namespace, partition)
        if check_queue(queue) not in spec.queues:
            raise UnknownQueue(f"partition {partition!r} has no queue {queue!r}")
        return spec

    async def paused_queues(self) -> frozenset[tuple[str, str]]:
        """Every paused (partition, queue)."""
        return await pause_state.read_paused(await self.etcd(), self.namespace)

    async def purge_queue(self, partition: str, queue: str, on_progress: OnCount | None = None) -> int:
        """Delete every ready job of a queue, for good; returns how many went.

        Jobs running (unacked) are not touched; the queue keys of purged jobs are
        released. Raises UnknownQueue if the RabbitMQ queue does not exist.
        `on_progress(done, total)` is called after each job.
        """
        broker = await self.broker()
        name = await self._existing(broker, partition, queue, queue_name)
        return await broker.drop_all(name, self._key_releaser(partition), on_progress)

    @staticmethod
    async def _existing(broker: Broker, partition: str, queue: str, naming: Callable[[str, str], str]) -> str:
        """The RabbitMQ queue `naming(partition, queue)`; UnknownQueue if it does not exist."""
        name = naming(check_partition(partition), check_queue(queue))
        if await broker.stats(name) is None:
            raise UnknownQueue(f"partition {partition!r} has no queue {queue!r} (no RabbitMQ queue {name})")
        return name

    def _key_releaser(self, partition: str) -> Callable[[Peeked], Awaitable[None]]:
        """Frees the queue key of a job that is about to be deleted, if it still holds it."""

        async def release_key(peeked: Peeked) -> None:
            with contextlib.suppress(DecodeError):
                message = decode(peeked.body)
                if message.queue_key is not None:
                    etcd = await self.etcd()
                    await queuekeys.release(etcd, self.namespace, partition, message.queue_key, message.id)

        return release_key

    async def partition(self, name: str) -> PartitionInfo:
        """A partition with, per queue: paused, ready / unacked / buried counts,
        consumers, and which node each consumer belongs to."""
        spec = await pmap.get_partition(await self.etcd(), self.namespace, name)
        broker = await self.broker()
        paused = await self.paused_queues()
        placed_on = placed(spec, await self.nodes())
        connections = await self._connection_names()
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
                    paused=(name, queue) in paused,
                    buried=await self._buried_count(broker, name, queue),
                    consumer_nodes=await self._consumer_nodes(rabbit_name, connections),
                    placed_on=placed_on,
                )
            )
        return PartitionInfo(name, infos)

    async def overview(self, specs: Sequence[PartitionSpec] | None = None) -> list[PartitionInfo]:
        """`partition()` for every partition (or those of `specs`), in a few requests whatever
        their number: the queues, consumers and connections each come in one management API
        request. The counts are the console's, up to one statistics interval old (5 s by
        default); without the management API this falls back to `partition()` for each.
        """
        specs = list(specs) if specs is not None else await self.partitions()
        paused = await self.paused_queues()
        live = await self.nodes()
        try:
            queues = {q.name: q for q in await self._management.queues(self._vhost)}
            consumers = await self._management.all_consumers(self._vhost)
            connections = await self._management.connection_names(self._vhost)
        except ManagementError:
            found = []
            for spec in specs:
                with contextlib.suppress(UnknownPartition):  # removed meanwhile
                    found.append(await self.partition(spec.name))
            return found
        by_queue: dict[str, list[ConsumerInfo]] = {}
        for c in consumers:
            by_queue.setdefault(c.queue, []).append(c)
        nodes = {queue: node_consumers(found, connections) for queue, found in by_queue.items()}
        infos = []
        for spec in specs:
            rows = []
            for queue, concurrency in spec.queues.items():
                rabbit_name = queue_name(spec.name, queue)
                main, buried = queues.get(rabbit_name), queues.get(buried_queue_name(spec.name, queue))
                rows.append(
                    QueueInfo(
                        name=queue,
                        rabbitmq_queue=rabbit_name,
                        concurrency=concurrency,
                        ready=main.messages_ready if main else None,
                        unacked=main.messages_unacknowledged if main else None,
                        consumers=main.consumers if main else None,
                        paused=(spec.name, queue) in paused,
                        buried=buried.messages_ready if buried else None,
                        consumer_nodes=sorted(nodes.get(rabbit_name, [])),
                        placed_on=placed(spec, live),
                    )
                )
            infos.append(PartitionInfo(spec.name, rows))
        return infos

    async def queue_rates(self) -> dict[str, QueueRates] | None:
        """RabbitMQ queue name -> messages per second in, delivered and acked,
        for every queue at once; None if the management API cannot be reached."""
        try:
            return await self._management.queue_rates(self._vhost)
        except ManagementError:
            return None

    async def _buried_count(self, broker: Broker, partition: str, queue: str) -> int | None:
        stats = await broker.stats(buried_queue_name(partition, queue))
        return stats.ready if stats else None

    async def _connection_names(self) -> dict[str, str] | None:
        """Connection name -> the name its client gave, or None without the management API."""
        try:
            return await self._management.connection_names(self._vhost)
        except ManagementError:
            return None

    async def _consumer_nodes(
        self, rabbit_name: str, connections: dict[str, str] | None
    ) -> list[NodeConsumer] | None:
        if connections is None:
            return None
        try:
            consumers = await self._management.consumers(rabbit_name, self._vhost)
        except ManagementError:
            return None
        return node_consumers(consumers, connections)

    async def cancel(self, partition: str, job_id: str) -> None:
        """Cancel a job wherever it is: dropped if still queued, stopped if running.

        The request lives in etcd for `cancel_ttl` seconds. Cancelling an
        unknown or finished job is not an error.
        """
        etcd = await self.etcd()
        await request_cancel(etcd, self.namespace, partition, job_id, self.cancel_ttl)

    # buried jobs

    async def buried(self, partition: str, queue: str, limit: int = 100) -> list[BuriedJob]:
        """Up to `limit` buried jobs of a queue, oldest first, left where they are;
        UnknownQueue if the queue does not exist."""
        broker = await self.broker()
        peeked = await broker.peek(await self._existing(broker, partition, queue, buried_queue_name), limit)
        return [BuriedJob.from_peeked(p) for p in peeked]

    async def queued(self, partition: str, queue: str, limit: int = 100) -> list[QueuedJob]:
        """Up to `limit` jobs waiting in a partition queue, next first, left where they are.

        A peek takes the messages (unacked) and gives them all back when it is
        done, so nothing is lost or consumed; where they go back is RabbitMQ's
        requeue (see `Broker.peek`: a quorum queue puts them behind the jobs
        not peeked) and they are marked redelivered. Jobs of an execution key
        waiting for their turn are in their key's waiting queue, not here.
        Raises UnknownQueue if the queue does not exist.
        """
        if limit < 1:
            raise ConfigError(f"limit must be at least 1, got {limit}")
        broker = await self.broker()
        name = await self._existing(broker, partition, queue, queue_name)
        return [QueuedJob.from_peeked(p) for p in await broker.peek(name, limit)]

    async def running(
        self, partition: str | None = None, timeout: float = control.DEFAULT_TIMEOUT
    ) -> control.RunningJobs:
        """The jobs running now on every live node (of `partition`, if given).

        Each node in etcd is asked over its control queue; a node that does not
        answer within `timeout` seconds is listed in `unreachable`, not left out.
        """
        if partition is not None:
            check_partition(partition)
        nodes = [n.name for n in await self.nodes()]
        broker = await self.broker()
        return await control.running(broker, self.namespace, nodes, partition, timeout)

    async def retry_buried(
        self,
        partition: str,
        queue: str,
        job_ids: Collection[str] | None = None,
        on_progress: OnCount | None = None,
        on_key_held: Callable[[str, str], None] | None = None,
    ) -> int:
        """Put buried jobs (all, or those in `job_ids`) back on their queue; returns how many.

        A job with a queue key takes its key again first (burying freed it). If
        another queued job holds the key meanwhile, the buried job stays buried,
        so the key still means one queued job, and `on_key_held(job_id, key)`
        hears of it. `on_progress(seen, total)` is called after each buried job
        looked at. Raises UnknownQueue if the queue does not exist.
        """
        broker = await self.broker()
        source = await self._existing(broker, partition, queue, buried_queue_name)
        target = queue_name(partition, queue)
        wanted = None if job_ids is None else set(job_ids)

        async def choose(peeked: Peeked) -> Moved | None:
            job_id = peeked.properties.get("message_id")
            if wanted is not None and job_id not in wanted:
                return None
            key = queue_key_of(peeked)
            if key is not None and job_id:
                try:  # a move that fails after this leaves the key to this job: a retry takes it again
                    await queuekeys.take(await self.etcd(), self.namespace, partition, key, str(job_id))
                except DuplicateJob:
                    if on_key_held is not None:
                        on_key_held(str(job_id), key)
                    return None
            return unburied(peeked, target)

        return await broker.move(source, choose, on_progress)

    async def purge_buried(self, partition: str, queue: str) -> int:
        """Delete every buried job of a queue; returns how many went (UnknownQueue if
        the queue does not exist).

        A buried job normally freed its queue key when it was buried; one that
        RabbitMQ dead-lettered by itself may still hold it, and it is freed here.
        """
        broker = await self.broker()
        name = await self._existing(broker, partition, queue, buried_queue_name)
        return await broker.drop_all(name, self._key_releaser(partition))

    # nodes

    async def nodes(self) -> Sequence[NodeInfo]:
        """The live nodes, sorted by name."""
        return await list_nodes(await self.etcd(), self.namespace)

    async def doctor(self) -> list[Finding]:
        """What the nodes skip without a word (see `cluster/audit.py`): partition entries
        that do not decode, paused keys that name no queue; and as notes (not ignored),
        pauses of queues not in the map and partitions no live node matches."""
        etcd = await self.etcd()
        partitions, findings = await audit.partition_entries(etcd, self.namespace)
        findings += await audit.paused_entries(etcd, self.namespace, partitions)
        live = [NodeProfile(n.name, frozenset(n.labels)) for n in await self.nodes()]
        for spec in partitions.values():
            if live and (spec.nodes or spec.labels) and not any(runs_on(spec, n) for n in live):
                selection = [f"nodes={','.join(spec.nodes)}"] if spec.nodes else []
                selection += [f"labels={','.join(spec.labels)}"] if spec.labels else []
                findings.append(
                    Finding(
                        keys.partition(self.namespace, spec.name),
                        f"partition {spec.name}: no live node matches its placement"
                        f" ({' '.join(selection)}); its jobs wait",
                        f"start a node it selects, or rogerctl partition start {spec.name} ..."
                        " with other --nodes/--labels",
                        ignored=False,
                    )
                )
        return findings
