"""A node: joins the cluster, follows the partition map, consumes every queue.

The node is a reconciler. Desired state is the partition map and the paused
queues in etcd, filtered for this node by `placement.desired_queues`; actual
state is this node's consumers in RabbitMQ. Whenever either side changes (a
map event, a lost channel, a lost connection) the node converges: declare
missing queues, attach a consumer per queue with prefetch = concurrency,
re-apply changed concurrency, drain consumers of removed queues. We do not
rely on aio-pika's robust connection to restore consumers; convergence after
a reconnect is the same code path as convergence after a map change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from .broker import Broker
from .callbacks import Callbacks, load_callbacks
from .cluster.cancellations import Cancellations, JobRef
from .cluster.drain import DrainReports
from .cluster.etcd import Etcd
from .cluster.execkeys import ExecKeys
from .cluster.membership import Membership, NodeInfo, follow_members
from .cluster.partitions import PartitionMap, follow_map
from .cluster.paused import follow_paused
from .config import NodeConfig
from .control import ControlServer, worker_handlers
from .errors import ConfigError, DuplicateNode, RogerError
from .health import HealthServer
from .job import JobRegistry
from .metrics import Metrics
from .placement import Assignments, NodeProfile, desired_queues, draining_partitions, placement_cost
from .runtime.chains import Chains
from .runtime.channels import ConsumerChannels
from .runtime.consumer import QueueConsumer
from .runtime.due import DueQueue
from .runtime.pipeline import Pipeline
from .runtime.recorder import Recorder
from .runtime.release import ReleaseQueue, Releaser
from .runtime.settle import Settler
from .runtime.threads import JobThreads
from .runtime.ticks import TickGate
from .runtime.worker import Stop, Worker
from .scheduler import Scheduler

log = logging.getLogger(__name__)

QueueId = tuple[str, str]
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
SYNC_JOB_THREADS = 512
START_TIMEOUT = 10.0
CONTROL_RETRY_DELAY = 2.0
INLINE_PLACEMENT_COST = 200_000  # rendezvous scores; above, the assignments are updated in a thread


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()


class Node:
    """One roger-node. `async with Node(config):` or `start()` / `stop()`."""

    def __init__(
        self,
        config: NodeConfig,
        registry: JobRegistry | None = None,
        on_consume_ok: Callable[[QueueConsumer], None] | None = None,
        callbacks: object | None = None,
    ) -> None:
        self.config = config
        """The node's configuration."""
        self._registry = registry
        self._callbacks = callbacks
        self._on_consume_ok = on_consume_ok
        self.etcd = Etcd(config.etcd)
        """The node's etcd connection."""
        self.broker = Broker(config.amqp, connection_name=config.name)
        """The node's RabbitMQ connection."""
        self.broker.on_connection_lost(self._connection_lost)
        self.consumer_channels = ConsumerChannels(self.broker)
        """The channels the queue consumers share, on this connection and more if needed."""
        self.info = NodeInfo.here(config.name, config.labels)
        """What the node publishes about itself in etcd."""
        self.profile = NodeProfile(config.name, frozenset(config.labels), config.concurrency)
        """The node's name, labels and concurrency overrides, as placement reads them."""
        self.membership = Membership(self.etcd, config.etcd.namespace, self.info, config.lease_ttl)
        """The node's membership in etcd: its name held under its lease."""
        self.consumers: dict[QueueId, QueueConsumer] = {}
        """The consumer of each partition queue this node consumes now."""
        self.map_loaded = asyncio.Event()
        """Set once the partition map was read at start."""
        self.converged = asyncio.Event()
        """Set whenever the consumers match the partition map and the pauses."""
        self.crashed = asyncio.Event()
        """Set when the node stopped on its own (it lost its name, or a task failed)."""
        self.failure: BaseException | None = None  # what set `crashed`
        """What set `crashed`."""
        self._desired: dict[QueueId, int] = {}
        self._map: PartitionMap | None = None
        self._paused: frozenset[QueueId] | None = None
        self._members: Mapping[str, frozenset[str]] | None = None  # live nodes, for --replicas
        self._assignments = Assignments()  # where each partition with replicas runs
        self._placing = asyncio.Lock()
        self._dirty = asyncio.Event()
        self.membership.on_registered.append(self._dirty.set)  # drain markers follow the lease
        self.consumer_channels.on_lost(self._dirty.set)
        self._drain_reports = DrainReports(self.etcd, config.etcd.namespace, config.name)
        self.cancellations = Cancellations(config.etcd.namespace)
        """The cancellation requests, mirrored from etcd by a watch."""
        self.releaser = Releaser(self.broker, self.etcd, config.etcd.namespace)  # keys of settled jobs
        """Frees the keys of settled jobs."""
        self.release_queue = ReleaseQueue(self.broker, self.etcd, config.etcd.namespace)
        """Releases etcd refused, retried from a durable queue."""
        self.release_queue.on_closed(self._dirty.set)
        self.due_queue = DueQueue(self.broker, config.etcd.namespace)  # delayed jobs now due
        """Moves delayed jobs now due to their queues."""
        self.due_queue.on_closed(self._dirty.set)
        self.exec_keys = ExecKeys(self.etcd, config.etcd.namespace)
        """The execution-key locks in etcd."""
        self.chains = Chains(
            self.broker, self.exec_keys, config.name, self._lease_id, self.releaser, config.waiting_idle
        )
        """Runs jobs with the same execution key one at a time, in order."""
        self._tasks: list[asyncio.Task[None]] = []  # follow the map and converge to it
        self._session: list[asyncio.Task[None]] = []  # keep-alive and cancellations, until we leave
        self._draining: dict[asyncio.Task[None], QueueConsumer] = {}  # consumers finishing their jobs
        self._threads: JobThreads | None = None
        self._http: HealthServer | None = None
        self._worker: Worker | None = None
        self._pipeline: Pipeline | None = None
        self.control: ControlServer | None = None  # answers `rogerctl job running`
        """Answers `rogerctl job running`; None until the node started."""
        self.ticks = TickGate(self.etcd, config.etcd.namespace, config.name)  # a tick's job runs once
        """Lets a schedule tick's job run once."""
        self.scheduler: Scheduler | None = None  # fires the schedules' ticks
        """Fires the schedules' ticks; None until the node started."""
        self.history: Recorder | None = None
        """Records job events in the namespace's history stream; None when history is off."""
        if config.history.enabled:
            own = Broker(config.amqp, connection_name=f"{config.name} history")
            self.history = Recorder(own, config.etcd.namespace, config.name, config.history)

    def _lease_id(self) -> int:
        return self.membership.lease_id

    @property
    def name(self) -> str:
        """The node name."""
        return self.config.name

    async def start(self) -> None:
        """Join the cluster and attach consumers for the current map.

        Raises ConfigError (bad --jobs), ClusterConnectionError,
        BrokerConnectionError or DuplicateNode; nothing is left running then.
        """
        registry = self._registry or JobRegistry.from_modules(self.config.jobs)
        callbacks = Callbacks(
            self._callbacks or (load_callbacks(self.config.callbacks) if self.config.callbacks else None)
        )
        self._threads = JobThreads(SYNC_JOB_THREADS)
        self._worker = Worker(
            registry, self.name, self._threads, self.config.retry_levels, self.cancellations, callbacks
        )
        self._worker.history = self.history
        settler = Settler(self.broker, self.exec_keys, self.releaser, self.config.etcd.namespace)
        self._pipeline = Pipeline(
            self._worker, settler, self.chains, self.config.amqp.delivery_limit, self.ticks
        )
        self.scheduler = Scheduler(
            self.etcd, self.broker, self.config.etcd.namespace, self.name, self.info.instance, registry
        )
        if self.config.http is not None:  # counting from the first job and the first tick on
            metrics = Metrics()
            self._worker.metrics = self.ticks.metrics = self.scheduler.metrics = metrics
        self.control = ControlServer(
            self.broker, self.config.etcd.namespace, self.name, worker_handlers(self._worker)
        )
        self.control.on_closed(self._dirty.set)
        try:
            await self.etcd.connect()
            await self.broker.connect()
            await self.membership.register()
        except BaseException:
            await self._close_clients()
            raise
        if self.history is not None:
            await self.history.start()
        self._session = [
            asyncio.create_task(self._guarded(self.membership.keep_alive()), name="keep-alive"),
            asyncio.create_task(
                self._guarded(self.cancellations.follow(self.etcd, self._on_cancel)), name="cancellations"
            ),
            asyncio.create_task(self._guarded(self.chains.tend()), name="execution-keys"),
        ]
        self._tasks = [
            asyncio.create_task(self._guarded(self._reconcile_forever()), name="reconcile"),
            asyncio.create_task(
                self._guarded(follow_map(self.etcd, self.config.etcd.namespace, self._on_map)),
                name="partition-map",
            ),
            asyncio.create_task(
                self._guarded(follow_paused(self.etcd, self.config.etcd.namespace, self._on_paused)),
                name="paused-queues",
            ),
            asyncio.create_task(
                self._guarded(follow_members(self.etcd, self.config.etcd.namespace, self._on_members)),
                name="members",
            ),
            asyncio.create_task(self._guarded(self.scheduler.run()), name="schedules"),
        ]
        await self._wait_converged()
        if self.config.http is not None:
            try:
                await self._serve_http(*self.config.http)
            except OSError as e:
                await self.stop()
                host, port = self.config.http
                raise ConfigError(f"cannot serve HTTP on {host}:{port}: {e.strerror}") from e
        log.info("node %s started with %d job class(es)", self.name, len(registry))

    async def _serve_http(self, host: str, port: int) -> None:
        assert self._worker is not None
        worker = self._worker
        metrics = worker.metrics
        assert metrics is not None  # made in start() when HTTP is on
        metrics.gauge("roger_running_jobs", "Jobs running on this node.", lambda: len(worker.running))
        metrics.gauge("roger_consumers", "Partition queues this node consumes.", lambda: len(self.consumers))
        metrics.gauge(
            "roger_amqp_connected", "1 when connected to RabbitMQ.", lambda: self.broker.is_connected
        )
        metrics.gauge(
            "roger_etcd_connected",
            "1 when etcd answered the last lease refresh.",
            lambda: self.membership.etcd_reachable,
        )
        if self.history is not None:
            history = self.history
            metrics.counted(
                "roger_history_dropped_events",
                "Job history events dropped because RabbitMQ did not take them.",
                lambda: history.dropped,
            )
        self._http = HealthServer(host, port, metrics, self.readiness)
        await self._http.start()

    def readiness(self) -> str | None:
        """None when the node is ready to work, else why not (for /readyz)."""
        if not self.broker.is_connected:
            return "not connected to RabbitMQ"
        if not self.membership.etcd_reachable:
            return "etcd does not answer"
        if not self.membership.registered.is_set():
            return "not registered in etcd"
        if not self.converged.is_set():
            return "partition map not applied yet"
        return None

    async def _wait_converged(self) -> None:
        """Return once the map was read and applied, or after START_TIMEOUT trying."""
        try:
            await asyncio.wait_for(self.converged.wait(), START_TIMEOUT)
        except TimeoutError:
            log.warning("node %s started before its consumers were attached; still trying", self.name)

    async def _guarded(self, coroutine: object) -> None:
        """Run a long-lived part; its crash is logged, never lost."""
        try:
            await coroutine  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except DuplicateNode as e:  # another instance took our name: not a crash
            log.error("node %s lost its name: %s; the node stops", self.name, e)
            self.failure = e
            self.crashed.set()
            raise
        except BaseException as e:
            log.critical("node part crashed; the node stops", exc_info=True)
            self.failure = e
            self.crashed.set()
            raise

    async def stop(self) -> None:
        """Leave gracefully: stop consuming, let running jobs finish within the
        shutdown timeout, requeue the rest, revoke the lease."""
        await _cancel_all(self._tasks)
        self.chains.stopping = True  # chains hand their keys over between jobs
        consumers, self.consumers = list(self.consumers.values()), {}
        timeout = self.config.shutdown_timeout
        # Consumers already draining (paused, drained, removed queues) get the same timeout.
        consumers += self._draining.values()
        await asyncio.gather(*(c.stop(timeout) for c in consumers), *self._draining)
        await self.releaser.close(timeout)  # keys of settled jobs, while our lease still holds
        if self.history is not None:
            await self.history.stop()  # what the last jobs recorded, before the connection goes
        await _cancel_all(self._session)
        try:
            await self.membership.leave()
        except RogerError as e:
            log.warning("could not revoke the node lease (it expires by itself): %s", e)
        await self._close_clients()
        if self._threads is not None:
            self._threads.shutdown()
        if self._http is not None:
            await self._http.stop()
        log.info("node %s stopped", self.name)

    async def _close_clients(self) -> None:
        if self.control is not None:
            await self.control.close()
        await self.release_queue.close()
        await self.due_queue.close()
        await self.consumer_channels.close()
        await self.broker.close()
        await self.etcd.close()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def abort(self) -> None:
        """Stop at once: close the connections without acking anything; unfinished
        jobs go back to their queues, the lease expires by itself."""
        await _cancel_all(self._tasks + self._session)
        if self.history is not None:
            await self.history.stop(timeout=0)
        if self._worker is not None:
            self._worker.stop_all(Stop.SHUTDOWN)
        await self._close_clients()
        if self._threads is not None:
            self._threads.shutdown()
        log.warning("node %s aborted", self.name)

    def _on_cancel(self, ref: JobRef) -> None:
        if self._worker is not None and self._worker.stop_job(ref, Stop.CANCEL):
            log.info("cancelling running job %s of partition %s", ref[1], ref[0])

    async def _on_map(self, partitions: PartitionMap) -> None:
        self._map = partitions
        await self._update_desired()

    async def _on_paused(self, paused: frozenset[QueueId]) -> None:
        self._paused = paused
        await self._update_desired()

    async def _on_members(self, members: Mapping[str, frozenset[str]]) -> None:
        self._members = members
        await self._update_desired()

    async def _update_desired(self) -> None:
        # Only once all are read: a paused queue must not be consumed even for a moment,
        # nor a partition with replicas on a node that is not among its chosen ones.
        if self._map is None or self._paused is None or self._members is None:
            return
        async with self._placing:  # one update of the assignments at a time
            partitions, members = self._map, self._members
            if placement_cost(partitions, members) > INLINE_PLACEMENT_COST:
                # A first computation in a big cluster (10 M scores at 1,000 nodes x 10,000
                # partitions: seconds of CPU) runs in a thread, so the lease keep-alive goes on.
                await asyncio.to_thread(self._assignments.update, partitions, members)
            else:
                self._assignments.update(partitions, members)
            self._desired = desired_queues(partitions, self._paused, self.profile, self._assignments)
        self._dirty.set()
        self.map_loaded.set()

    def _connection_lost(self, error: BaseException | None) -> None:
        """The one log line of a lost connection (the jobs it took down say no more
        than what becomes of each); then converge, which reconnects."""
        if error is not None:
            log.warning(
                "lost the connection to RabbitMQ (%s); reconnecting, unsettled jobs go back to their queues",
                error,
            )
        self._dirty.set()

    async def _reconcile_forever(self) -> None:
        attempt = 0
        while True:
            await self._dirty.wait()
            try:
                await self._converge()
                attempt = 0
                continue
            except RogerError as e:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                log.warning("cannot converge (%s); trying again in %.1fs", e, delay)
            except Exception:  # a library fault we did not map: log it loudly, keep converging
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                log.exception("unexpected error while converging; trying again in %.1fs", delay)
            attempt += 1
            await asyncio.sleep(delay)
            self._dirty.set()

    async def _converge(self) -> None:
        self._dirty.clear()
        if not self.broker.is_connected:
            await self._reconnect_broker()
        desired = dict(self._desired)
        for queue_id in [q for q in self.consumers if q not in desired]:
            self._drain(self.consumers.pop(queue_id))
        await self._start_control()
        # Only queues whose consumer is missing, dead or at another concurrency: with
        # thousands of queues, a coroutine per settled queue made every map change O(queues).
        unsettled = [(q, n) for q, n in desired.items() if not self._settled(q, n)]
        await asyncio.gather(*(self._converge_queue(queue_id, n) for queue_id, n in unsettled))
        await self._report_drained()
        if self.map_loaded.is_set() and not self._dirty.is_set():
            self.converged.set()

    async def _start_control(self) -> None:
        """Answer control requests and consume the release queue (again, after a
        reconnect); a no-op while they run.

        A failure (the control queue still held by our previous connection) is
        retried soon, and never keeps the node from converging its queues.
        """
        parts = (
            (self.control, "answer control requests"),
            (self.release_queue, "release keys"),
            (self.due_queue, "move due delayed jobs"),
        )
        for part, what in parts:
            if part is None or part.is_alive:
                continue
            try:
                await part.start()
            except RogerError as e:
                log.warning("cannot %s yet (%s); trying again", what, e)
                asyncio.get_running_loop().call_later(CONTROL_RETRY_DELAY, self._dirty.set)

    def _settled(self, queue_id: QueueId, concurrency: int) -> bool:
        consumer = self.consumers.get(queue_id)
        return consumer is not None and consumer.is_alive and consumer.concurrency == concurrency

    async def _converge_queue(self, queue_id: QueueId, concurrency: int) -> None:
        consumer = self.consumers.get(queue_id)
        if consumer is not None and consumer.is_alive:
            await consumer.set_concurrency(concurrency)
            return
        partition, queue = queue_id
        if consumer is not None and consumer.is_open:
            # RabbitMQ cancelled the consumer (its queue was deleted): declare the queue
            # again and consume on the same channel, which still settles the jobs it runs.
            await consumer.wait_resumable()
            await self.broker.declare(partition, queue)
            await self.broker.check_consumable(consumer.name)
            await consumer.resume(concurrency)
            return
        if consumer is not None:
            await consumer.close()
        assert self._pipeline is not None
        consumer = QueueConsumer(
            self.consumer_channels, self._pipeline, partition, queue, concurrency, self._on_consume_ok
        )
        await self.broker.declare(partition, queue)
        await consumer.start()
        consumer.on_closed(self._dirty.set)
        self.consumers[queue_id] = consumer

    def _drain(self, consumer: QueueConsumer) -> None:
        """Stop taking jobs of a queue no longer wanted here; its running jobs finish
        (only a shutdown limits them), then the node converges again."""
        log.info("not consuming %s any more; its running jobs finish", consumer.name)
        task = asyncio.create_task(consumer.stop(None))
        self._draining[task] = consumer

        def done(_: object) -> None:
            self._draining.pop(task, None)
            if not task.cancelled() and (error := task.exception()) is not None:
                log.warning("stopping the consumer of %s: %s", consumer.name, error)
            self._dirty.set()  # a draining partition may be done on this node now

        task.add_done_callback(done)

    async def _report_drained(self) -> None:
        """Tell the cluster which draining partitions run no job here any more."""
        if self._map is None:
            return
        busy = {p for p, _ in self.consumers} | {c.partition for c in self._draining.values()}
        draining = draining_partitions(self._map)
        await self._drain_reports.report(draining, frozenset(busy), self.membership.lease_id)

    async def _reconnect_broker(self) -> None:
        await self.release_queue.close()
        await self.due_queue.close()
        for queue_id, consumer in list(self.consumers.items()):
            if not consumer.is_open:  # those on the connections opened for consumers go on
                await consumer.close()
                del self.consumers[queue_id]
        await self.broker.close()
        await self.broker.connect()
        log.info("connected to RabbitMQ at %s", self.config.amqp.describe())
        self.chains.scan_soon()  # wakes that failed while we were cut off
