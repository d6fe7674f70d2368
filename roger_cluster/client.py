"""Client: what applications and rogerctl use to enqueue jobs and run the cluster.

Enqueue touches only RabbitMQ (no etcd round trip for a plain job) and returns
after the publisher confirm. Partition commands write the partition map in
etcd; `ensure_partition` (create if absent: what an app calls at start) and
`set_partition` (create or replace: what an operator does) declare the queues
first, so jobs can be enqueued as soon as they return, before any node has
seen the partition.

This module is the facade: publishing is `enqueue.py`, reading the live
state of partitions is `overview.py`, the jobs sitting in queues (peek,
retry buried, purge) are `queue_contents.py`; the client never imports the
runtime.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Protocol, overload
from urllib.parse import unquote, urlsplit

from . import control, environment
from .broker import Broker, OnCount
from .cluster import audit
from .cluster import drain as drains
from .cluster import partitions as pmap
from .cluster import paused as pause_state
from .cluster.audit import Finding
from .cluster.cancellations import DEFAULT_TTL as DEFAULT_CANCEL_TTL
from .cluster.cancellations import request_cancel
from .cluster.drain import DEFAULT_DRAIN_TIMEOUT, OnProgress
from .cluster.etcd import Etcd
from .cluster.membership import NodeInfo, list_nodes
from .cluster.partitions import PartitionSpec
from .codec import JobMessage
from .config import (
    DEFAULT_AMQP_URL,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_ETCD,
    DEFAULT_NAMESPACE,
    AmqpConfig,
    EtcdConfig,
)
from .delays import Delay, check_at, check_delay
from .enqueue import ENQUEUE_WINDOW, Enqueuer, When
from .errors import (
    ConfigError,
    InvalidEntry,
    UnknownQueue,
)
from .history import HistoryReader, JobEvent, JobStory, where_now
from .job import Job
from .management import Management, QueueRates
from .names import check_partition, check_queue
from .overview import NodeConsumer, PartitionInfo, QueueInfo, Reader, node_consumers, placed
from .placement import NodeProfile, runs_on
from .queue_contents import BuriedJob, QueueContents, QueuedJob
from .schedule_admin import ScheduleInfo, Schedules
from .scheduled import Scheduled, read_scheduled
from .schedules import Schedule

# Names moved to enqueue.py, overview.py and queue_contents.py stay importable from here.
__all__ = [
    "ENQUEUE_WINDOW",
    "BuriedJob",
    "Client",
    "Enqueuing",
    "NodeConsumer",
    "PartitionInfo",
    "QueueInfo",
    "QueuedJob",
    "ScheduleInfo",
    "node_consumers",
    "placed",
]


class Enqueuing(Protocol):
    """What app code needs to enqueue and cancel jobs, as a type: `Client` is one,
    and so is `roger_cluster.testing.InlineClient`, so code that takes an
    `Enqueuing` runs unchanged in unit tests without servers (docs/testing.md)."""

    async def enqueue(
        self,
        job: Job,
        partition: str,
        queue: str | None = None,
        *,
        delay: Delay | None = None,
        at: datetime.datetime | None = None,
    ) -> str:
        """Enqueue `job` into `partition`; returns its id (see `Client.enqueue`)."""
        ...

    async def enqueue_many(
        self,
        jobs: Iterable[Job],
        partition: str,
        queue: str | None = None,
        *,
        delay: Delay | None = None,
        at: datetime.datetime | None = None,
    ) -> list[str]:
        """Enqueue many jobs; returns their ids (see `Client.enqueue_many`)."""
        ...

    async def cancel(self, partition: str, job_id: str) -> None:
        """Cancel a job, queued or running (see `Client.cancel`)."""
        ...


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
        partition: str | None = None,
    ) -> None:
        """Connection settings as strings, or whole configs (`amqp_config`,
        `etcd_config`: TLS, etcd auth) which then take precedence. `partition` is the
        default partition of `enqueue`, `enqueue_many` and `cancel` (an app's own)."""
        self.cancel_ttl = cancel_ttl
        """Seconds a cancellation request is kept in etcd."""
        self.default_partition = check_partition(partition) if partition is not None else None
        """The partition of `enqueue`, `enqueue_many` and `cancel` when a call names none."""
        self.management_url = management_url
        """The RabbitMQ management API's URL, if given (else derived from the AMQP URL)."""
        self.amqp_config = amqp_config or AmqpConfig(
            url=amqp_url, queue_type=queue_type, delivery_limit=delivery_limit
        )
        """The RabbitMQ settings this client connects with."""
        self.etcd_config = etcd_config or EtcdConfig.from_string(etcd, namespace)
        """The etcd settings this client connects with (endpoints, namespace, TLS, auth)."""
        self._broker = Broker(self.amqp_config)
        self._etcd = Etcd(self.etcd_config)
        first_broker = self.amqp_config.urls[0]
        vhost = unquote(urlsplit(first_broker).path[1:]) or "/"
        self._enqueuer = Enqueuer(self.broker, self.etcd, self.etcd_config.namespace)
        self._contents = QueueContents(self.broker, self.etcd, self.etcd_config.namespace)
        self._schedules = Schedules(self.etcd, self.etcd_config.namespace, self.enqueue_message)
        self._management = Management.for_amqp(first_broker, management_url)
        self._history = HistoryReader(self.broker, self.etcd_config.namespace)
        self._reader = Reader(self._management, vhost, self.broker)
        self._broker_lock = asyncio.Lock()
        self._etcd_lock = asyncio.Lock()
        self._etcd_ready = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, partition: str | None = None) -> Client:
        """A client configured as `rogerctl` is, from the ROGER_* variables (docs/configuration.md).

        ROGER_AMQP_URL (or the file ROGER_AMQP_URL_FILE names), ROGER_ETCD, ROGER_NAMESPACE,
        ROGER_QUEUE_TYPE, ROGER_DELIVERY_LIMIT, the TLS files ROGER_{AMQP,ETCD}_{CA,CERT,KEY},
        ROGER_ETCD_USER with ROGER_ETCD_PASSWORD(_FILE), ROGER_MANAGEMENT_URL, ROGER_CANCEL_TTL,
        and ROGER_PARTITION, the default partition (`partition` given here wins). Reads
        `os.environ` unless `environ` is given; raises ConfigError for a value that does not parse.
        Opens no connection.
        """
        settings = environment.client_settings(environ)
        return cls(
            management_url=settings.management_url,
            cancel_ttl=settings.cancel_ttl,
            amqp_config=settings.amqp,
            etcd_config=settings.etcd,
            partition=partition or settings.partition,
        )

    def partition_or_default(self, partition: str | None) -> str:
        """`partition`, else the client's default; ConfigError naming the fix if neither."""
        if partition is not None:
            return partition
        if self.default_partition is None:
            raise ConfigError(
                'no partition given and the client has no default: pass one (enqueue(job, "myapp")),'
                ' or give the client one (Client(..., partition="myapp"), or ROGER_PARTITION for from_env)'
            )
        return self.default_partition

    @property
    def namespace(self) -> str:
        """The etcd namespace of this cluster."""
        return self.etcd_config.namespace

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close both connections, and the management API's connection pool."""
        await self._broker.close()
        await self._etcd.close()
        await self._management.close()
        self._etcd_ready = False

    async def close_etcd(self) -> None:
        """Close only the etcd channel; the next call that needs etcd opens it again.

        `SyncClient` does this before a fork: gRPC's asyncio poller thread would not exist in
        the child, and a channel left open keeps the child using it (and hanging).
        """
        async with self._etcd_lock:
            self._etcd_ready = False
            await self._etcd.close()

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

    async def enqueue(
        self,
        job: Job,
        partition: str | None = None,
        queue: str | None = None,
        *,
        delay: Delay | None = None,
        at: datetime.datetime | None = None,
    ) -> str:
        """Publish `job` to `partition` and wait for RabbitMQ's confirm; returns the job id.

        Without `partition`, the client's default (`Client(partition=...)`, ROGER_PARTITION).
        With `delay` (seconds, or a timedelta) or `at` (an aware datetime) the job
        waits in RabbitMQ and runs no earlier than then (up to `delays.MAX_DELAY`
        ahead; a time already past runs it at once); see docs/scheduling.md.
        Raises UnroutableJob if the partition or queue does not exist,
        JobError for args that cannot be sent, ConfigError for a bad delay,
        BrokerConnectionError if RabbitMQ cannot be reached.
        """
        return await self.enqueue_message(JobMessage.from_job(job, queue), partition, delay=delay, at=at)

    async def enqueue_message(
        self,
        message: JobMessage,
        partition: str | None = None,
        *,
        delay: Delay | None = None,
        at: datetime.datetime | None = None,
    ) -> str:
        """Enqueue a prepared message (as `rogerctl job enqueue` does); returns its id.

        A plain job is one confirmed publish. A job with a queue key first takes
        the key in etcd (DuplicateJob if held) and gives it back if the publish
        fails; a job with an execution key goes to its key's waiting queue.
        `delay` and `at` as for `enqueue`.
        """
        return await self._enqueuer.one(message, self.partition_or_default(partition), when_of(delay, at))

    async def enqueue_many(
        self,
        jobs: Iterable[Job],
        partition: str | None = None,
        queue: str | None = None,
        *,
        delay: Delay | None = None,
        at: datetime.datetime | None = None,
    ) -> list[str]:
        """Enqueue many jobs with up to ENQUEUE_WINDOW confirms in flight at once.

        Returns once every job is confirmed. If one fails, the first error is
        raised after the rest were tried; jobs confirmed before it are queued.
        `delay` and `at` as for `enqueue`, the same for every job (a delay
        counts from each job's own publish). Without `partition`, the client's default.
        """
        partition = check_partition(self.partition_or_default(partition))
        when = when_of(delay, at)
        return await self._enqueuer.many([JobMessage.from_job(job, queue) for job in jobs], partition, when)

    # partitions

    async def ensure_partition(
        self,
        name: str,
        queues: Mapping[str, int],
        *,
        nodes: Collection[str] = (),
        labels: Collection[str] = (),
        replicas: int | None = None,
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
        spec = PartitionSpec(name, dict(queues), tuple(nodes), tuple(labels), replicas=replicas)
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
        replicas: int | None = None,
    ) -> PartitionSpec:
        """Create a partition or replace it: queues, concurrency, placement.

        What `rogerctl partition start` does; an operator's tool, not an app's
        boot step (an app calls `ensure_partition`, which leaves an existing
        partition alone). Queues are declared before the map is written, so a
        job enqueued after this returns is never unroutable. Queues missing
        from `queues` that the partition had before are no longer consumed;
        their messages stay. `nodes` and `labels` limit the nodes that consume
        it (a node must be named and carry every label; empty: every node);
        `replicas` K runs it on K of those nodes, chosen by rendezvous hashing
        from the live members (None: on all of them; see docs/concepts.md).
        The whole spec is replaced: setting a draining partition ends the drain.
        """
        spec = PartitionSpec(name, dict(queues), tuple(nodes), tuple(labels), replicas=replicas)
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
        replicas: int | None = None,
    ) -> PartitionSpec:
        """`set_partition` under its former name, kept for existing code: it replaces
        what an operator changed. At application start, call `ensure_partition`."""
        return await self.set_partition(name, queues, nodes=nodes, labels=labels, replicas=replicas)

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
        return await self._contents.purge(partition, queue, on_progress)

    async def partition(self, name: str) -> PartitionInfo:
        """A partition with, per queue: paused, ready / unacked / buried counts,
        consumers, and which node each consumer belongs to."""
        spec = await pmap.get_partition(await self.etcd(), self.namespace, name)
        return await self._reader.partition(spec, await self.paused_queues(), await self.nodes())

    async def overview(self, specs: Sequence[PartitionSpec] | None = None) -> list[PartitionInfo]:
        """`partition()` for every partition (or those of `specs`), in a few requests whatever
        their number: the queues, consumers and connections each come in one management API
        request. The counts are the console's, up to one statistics interval old (5 s by
        default); without the management API each queue is read as `partition()` does.
        """
        specs = list(specs) if specs is not None else await self.partitions()
        return await self._reader.overview(specs, await self.paused_queues(), await self.nodes())

    async def queue_rates(self) -> dict[str, QueueRates] | None:
        """RabbitMQ queue name -> messages per second in, delivered and acked,
        for every queue at once; None if the management API cannot be reached."""
        return await self._reader.rates()

    @overload
    async def cancel(self, partition: str, job_id: str) -> None: ...

    @overload
    async def cancel(self, job_id: str, /) -> None: ...

    async def cancel(self, partition: str, job_id: str | None = None) -> None:
        """Cancel a job wherever it is: dropped if still queued, stopped if running.

        `cancel(partition, job_id)`, or `cancel(job_id)` in the client's default partition.
        The request lives in etcd for `cancel_ttl` seconds. Cancelling an
        unknown or finished job is not an error.
        """
        if job_id is None:
            partition, job_id = self.partition_or_default(None), partition
        etcd = await self.etcd()
        await request_cancel(etcd, self.namespace, partition, job_id, self.cancel_ttl)

    async def scheduled(self, partition: str, limit: int = 100) -> Scheduled:
        """What waits in the delay levels for `partition` (delayed jobs and retries): the
        first `limit` jobs, soonest first, and the count per delay band. Each level is read
        whole and given back in its order, so nothing is reordered or taken (see
        `scheduled.py`); a level too full to read is only counted."""
        return await read_scheduled(self.broker, self.namespace, partition, limit)

    # buried jobs

    async def buried(self, partition: str, queue: str, limit: int = 100) -> list[BuriedJob]:
        """Up to `limit` buried jobs of a queue, oldest first, left where they are;
        UnknownQueue if the queue does not exist."""
        return await self._contents.buried(partition, queue, limit)

    async def queued(self, partition: str, queue: str, limit: int = 100) -> list[QueuedJob]:
        """Up to `limit` jobs waiting in a partition queue, next first, left where they are.

        A peek takes the messages (unacked) and gives them all back when it is
        done, so nothing is lost or consumed, though they may come back in
        another order (see `QueueContents.queued`). Raises UnknownQueue if the
        queue does not exist.
        """
        return await self._contents.queued(partition, queue, limit)

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

    # job history (docs/history.md)

    async def job_events(self, job_id: str, since: float | None = None) -> list[JobEvent]:
        """Every recorded event of job `job_id` at or after `since` (Unix time; None: all the
        history stream keeps), oldest first; read from the stream, nothing consumed."""
        return await self._history.job(job_id, since)

    async def job_history(
        self,
        partition: str,
        *,
        queue: str | None = None,
        state: str | None = None,
        job_class: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[JobEvent]:
        """The latest `limit` job events of `partition`, newest first, of `queue`, in `state`
        (one of `history.STATES`: "failed" is retried or buried) and of `job_class`
        (`module:Class` or `Class`), at or after `since` (Unix time; None: all kept)."""
        check_partition(partition)
        if queue is not None:
            check_queue(queue)
        return await self._history.search(
            partition, queue=queue, state=state, job_class=job_class, since=since, limit=limit
        )

    async def job_story(
        self, job_id: str, since: float | None = None, timeout: float = control.DEFAULT_TIMEOUT
    ) -> JobStory:
        """Where job `job_id` is now and every step it took: its events (see `job_events`)
        and the node running it now, if a live node says so (asked as `running` does)."""
        events = await self.job_events(job_id, since)
        running = await self.running(timeout=timeout)
        node = next((j.node for j in running.jobs if j.id == job_id), None)
        return JobStory(job_id, events, node, where_now(events, node))

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
        return await self._contents.retry_buried(partition, queue, job_ids, on_progress, on_key_held)

    async def purge_buried(self, partition: str, queue: str) -> int:
        """Delete every buried job of a queue; returns how many went (UnknownQueue if
        the queue does not exist). A queue key a buried job still holds is freed."""
        return await self._contents.purge_buried(partition, queue)

    # nodes

    async def put_schedule(self, schedule: Schedule) -> Schedule:
        """Create or replace a recurring schedule (what an operator does); every node fires
        from it at once. Its state (the last tick fired) is kept. Returns it as stored
        (`created_at` set: no tick before it fires)."""
        return await self._schedules.put(schedule)

    async def ensure_schedule(self, schedule: Schedule) -> Schedule:
        """Create a schedule only if none of its name exists (what an app calls at every
        start: an operator's pause or change stays); returns the schedule in force."""
        return await self._schedules.ensure(schedule)

    async def get_schedule(self, name: str) -> ScheduleInfo:
        """A schedule, its next fire time and what fired last; UnknownSchedule if none."""
        return await self._schedules.get(name)

    async def schedules(self) -> list[ScheduleInfo]:
        """Every schedule with its next fire time, last tick fired and by which node."""
        return await self._schedules.list()

    async def pause_schedule(self, name: str) -> Schedule:
        """Stop firing a schedule (its ticks meanwhile are skipped, never caught up)."""
        return await self._schedules.set_paused(name, True)

    async def resume_schedule(self, name: str) -> Schedule:
        """Fire a paused schedule again, from its next tick."""
        return await self._schedules.set_paused(name, False)

    async def remove_schedule(self, name: str) -> None:
        """Delete a schedule; queued jobs of its ticks are dropped unrun."""
        await self._schedules.remove(name)

    async def run_schedule_now(self, name: str) -> str:
        """Enqueue a schedule's job once, now, beside its ticks; returns the job id."""
        return await self._schedules.run_now(name)

    async def nodes(self) -> Sequence[NodeInfo]:
        """The live nodes, sorted by name."""
        return await list_nodes(await self.etcd(), self.namespace)

    async def doctor(self) -> list[Finding]:
        """What the nodes skip without a word (see `cluster/audit.py`): partition and
        schedule entries that do not decode, paused keys that name no queue; and as notes
        (not ignored), pauses of queues not in the map and partitions no live node matches."""
        etcd = await self.etcd()
        partitions, findings = await audit.partition_entries(etcd, self.namespace)
        findings += await audit.paused_entries(etcd, self.namespace, partitions)
        findings += await audit.schedule_entries(etcd, self.namespace)
        live = [NodeProfile(n.name, frozenset(n.labels)) for n in await self.nodes()]
        if live:  # with no node at all, every partition waits: not a placement problem
            findings += audit.unplaced_partitions(
                self.namespace, partitions, lambda spec: any(runs_on(spec, n) for n in live)
            )
        return findings


def when_of(delay: Delay | None, at: datetime.datetime | None) -> When | None:
    """The `When` of an enqueue's `delay` / `at`, checked; None to enqueue at once."""
    if delay is None and at is None:
        return None
    if delay is not None and at is not None:
        raise ConfigError("give a delay or a time (at), not both")
    if at is not None:
        stamp = check_at(at)
        return When(at=stamp) if stamp > time.time() else None
    assert delay is not None
    seconds = check_delay(delay)
    return When(delay=seconds) if seconds > 0 else None
