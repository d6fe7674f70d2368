"""Firing recurring schedules from every node, each tick exactly once.

Every node runs a `Scheduler`. It mirrors four prefixes of etcd (schedules,
their states, the tick records, the live nodes) from watches, so deciding
what is due costs no round trip. For each unpaused schedule, at its next tick
T, the nodes are ranked by rendezvous hash over the live nodes for (schedule,
T); rank r tries at T + min(r, 4) x 0.2 s and skips when its mirror already
shows the tick claimed, so one node usually does the work and a dead node's
ticks are claimed by the next rank within a second. Claiming is one etcd
transaction (`cluster/schedules.claim`); only its winner publishes the job,
with the tick's id, and retries the publish until RabbitMQ confirms.

A tick record neither published (confirmed by RabbitMQ, noted in the record)
nor started whose node is dead (its key gone, or held by another run of it)
is taken over by a live node, by the same ranking, and published again under
a new nonce: a tick is not lost when its claimer dies before publishing, and
the copy published first, if any, is dropped as a duplicate by the node that
dequeues it (`runtime/ticks.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from .broker import Broker
from .cluster import keys
from .cluster import schedules as store
from .cluster.etcd import Etcd, WatchEvent
from .cluster.membership import NodeInfo
from .cluster.schedules import ScheduleState, TickRecord
from .cluster.watch import follow_prefix
from .enqueue import Enqueuer
from .errors import ConfigError, DuplicateJob, JobError, RogerError, UnknownJob, UnroutableJob
from .job import Job, JobRegistry
from .metrics import Metrics
from .schedules import Schedule, due, parse_tick_label, rank, tick_job_id, tick_label, tick_message

log = logging.getLogger(__name__)

RANK_STEP = 0.2  # seconds between two ranks' attempts at one tick
MAX_RANK = 4  # ranks beyond this try with rank 4's delay
IDLE = 5.0  # look again at least this often
RETRY_AFTER = 1.0  # a claim etcd refused is tried again after this
PUBLISH_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
# Unstarted tick records one schedule may have (its partition paused or stopped):
# further ticks are misfires, so records cannot pile up without bound.
MAX_UNSTARTED = 100

Clock = Callable[[], float]


class Scheduler:
    """This node's part in firing the cluster's schedules."""

    def __init__(
        self,
        etcd: Etcd,
        broker: Broker,
        namespace: str,
        node: str,
        instance: str,
        registry: JobRegistry,
        clock: Clock = time.time,
    ) -> None:
        self.etcd = etcd
        self.namespace = namespace
        self.node = node
        self.instance = instance
        self.registry = registry
        self.clock = clock
        self.metrics: Metrics | None = None
        self._enqueuer = Enqueuer(self._broker_getter(broker), self._etcd_getter(), namespace)
        self.specs: dict[str, Schedule] = {}
        self.states: dict[str, ScheduleState] = {}
        self.ticks: dict[tuple[str, int], TickRecord] = {}
        self.live: dict[str, str] = {}  # node name -> instance
        self._loaded: set[str] = set()
        self._wake = asyncio.Event()
        self._busy: set[str] = set()  # schedules with a claim under way
        self._not_before: dict[str, float] = {}  # a failed claim waits
        self._dead_since: dict[tuple[str, int], float] = {}
        self._busy_ticks: set[tuple[str, int]] = set()  # take-overs under way
        self._work: set[asyncio.Task[None]] = set()

    def _broker_getter(self, broker: Broker) -> Callable[[], Awaitable[Broker]]:
        async def get() -> Broker:
            return broker

        return get

    def _etcd_getter(self) -> Callable[[], Awaitable[Etcd]]:
        async def get() -> Etcd:
            return self.etcd

        return get

    async def run(self) -> None:
        """Mirror etcd and fire what is due, until cancelled."""
        ns = self.namespace
        follows = [
            (keys.schedules_prefix(ns), self._on_spec),
            (keys.schedule_states_prefix(ns), self._on_state),
            (keys.schedule_ticks_prefix(ns), self._on_tick),
            (keys.nodes_prefix(ns), self._on_node),
        ]
        try:
            async with asyncio.TaskGroup() as group:
                for prefix, apply in follows:
                    group.create_task(self._follow(prefix, apply))
                group.create_task(self._loop())
        finally:
            for task in list(self._work):
                task.cancel()
            await asyncio.gather(*self._work, return_exceptions=True)

    # --- the mirrors

    async def _follow(self, prefix: str, apply: Callable[[str, bytes | None], None]) -> None:
        async def reset(state: dict[str, bytes]) -> None:
            self._clear(prefix)
            for key, value in state.items():
                apply(key, value)
            self._loaded.add(prefix)
            self._wake.set()

        async def events(batch: list[WatchEvent]) -> None:
            for event in batch:
                apply(event.key, event.value)
            self._wake.set()

        await follow_prefix(self.etcd, prefix, reset, events)

    def _clear(self, prefix: str) -> None:
        ns = self.namespace
        if prefix == keys.schedules_prefix(ns):
            self.specs.clear()
        elif prefix == keys.schedule_states_prefix(ns):
            self.states.clear()
        elif prefix == keys.schedule_ticks_prefix(ns):
            self.ticks.clear()
        else:
            self.live.clear()

    def _on_spec(self, key: str, value: bytes | None) -> None:
        name = keys.name_of(keys.schedules_prefix(self.namespace), key)
        if value is None:
            self.specs.pop(name, None)
            return
        try:
            self.specs[name] = Schedule.decode(value)
        except ConfigError as e:
            log.error("ignoring schedule %s: %s", name, e)
            self.specs.pop(name, None)

    def _on_state(self, key: str, value: bytes | None) -> None:
        name = keys.name_of(keys.schedule_states_prefix(self.namespace), key)
        if value is None:
            self.states.pop(name, None)
        else:
            self.states[name] = ScheduleState.decode(value)

    def _on_tick(self, key: str, value: bytes | None) -> None:
        name, _, label = keys.name_of(keys.schedule_ticks_prefix(self.namespace), key).partition("/")
        try:
            tick = parse_tick_label(label)
        except ConfigError:
            return
        record = TickRecord.decode(value) if value is not None else None
        if record is None:
            self.ticks.pop((name, tick), None)
        else:
            self.ticks[(name, tick)] = record

    def _on_node(self, key: str, value: bytes | None) -> None:
        name = keys.name_of(keys.nodes_prefix(self.namespace), key)
        if value is None:
            self.live.pop(name, None)
        else:
            self.live[name] = NodeInfo.decode(name, value).instance

    @property
    def ready(self) -> bool:
        """Whether all four mirrors were read."""
        return len(self._loaded) == 4

    # --- deciding

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            delay = self._step(self.clock()) if self.ready else IDLE
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    def _step(self, now: float) -> float:
        """Start the claims and take-overs due at `now`; returns how long until the next."""
        until = IDLE
        for name, spec in list(self.specs.items()):
            if spec.paused or name in self._busy:
                continue
            try:
                at = max(self._claim_at(spec), self._not_before.get(name, 0.0))
            except Exception:  # a tick croniter cannot compute: this schedule waits, no other
                log.exception("schedule %s: cannot compute its next tick; trying again later", name)
                self._not_before[name] = now + IDLE
                continue
            if at <= now:
                self._busy.add(name)
                self._spawn(self._claim(spec))
            else:
                until = min(until, at - now)
        return min(until, self._recover(now))

    def _claim_at(self, spec: Schedule) -> float:
        """When this node tries to claim the schedule's next tick."""
        state = self.states.get(spec.name)
        last = state.last if state is not None and state.last is not None else spec.start - 1
        tick = spec.timetable.next_after(last)
        return tick + self._delay(spec.name, tick)

    def _delay(self, name: str, tick: int) -> float:
        nodes = set(self.live) | {self.node}
        return min(rank(self.node, name, tick, nodes), MAX_RANK) * RANK_STEP

    def _recover(self, now: float) -> float:
        """Take over unstarted ticks of dead nodes; returns how long until the next try."""
        until = IDLE
        dead = set()
        for (name, tick), record in list(self.ticks.items()):
            if record.started is not None or record.published or self._alive(record):
                continue
            if name not in self.specs or (name, tick) in self._busy_ticks:
                continue
            dead.add((name, tick))
            since = self._dead_since.setdefault((name, tick), now)
            at = since + self._delay(name, tick)
            if at <= now:
                self._busy_ticks.add((name, tick))
                self._spawn(self._take_over(self.specs[name], tick, record))
            else:
                until = min(until, at - now)
        for gone in set(self._dead_since) - dead:
            del self._dead_since[gone]
        return until

    def _alive(self, record: TickRecord) -> bool:
        """Whether the record's publisher runs: a live node's run, or this very one (even
        while its key is gone: etcd was out of reach longer than its lease)."""
        if record.by == self.node and record.instance == self.instance:
            return True
        return self.live.get(record.by) == record.instance

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    # --- claiming and taking over

    async def _claim(self, spec: Schedule) -> None:
        try:
            await self._claim_once(spec)
        except RogerError as e:
            log.warning("cannot claim the next tick of schedule %s (%s); trying again", spec.name, e)
            self._not_before[spec.name] = self.clock() + RETRY_AFTER
        except Exception:  # a fault we did not map: keep it visible, keep the node
            log.exception("unexpected error claiming the next tick of schedule %s", spec.name)
            self._not_before[spec.name] = self.clock() + IDLE
        finally:
            self._busy.discard(spec.name)
            self._wake.set()

    async def _claim_once(self, spec: Schedule) -> None:
        seen, state = await store.read_state(self.etcd, self.namespace, spec.name)
        self.states[spec.name] = state  # fresher than the mirror until the watch catches up
        now = self.clock()
        result = due(spec, state.last, now)
        if not result.fire and not result.misfired:
            return
        unstarted = sum(1 for (n, _), r in self.ticks.items() if n == spec.name and r.started is None)
        room = max(0, MAX_UNSTARTED - unstarted)
        fire, over = result.fire[:room], result.fire[room:]
        last = result.fire[-1] if result.fire else spec.timetable.last_at_or_before(now)
        misfired = result.misfired + len(over)
        records = {tick: TickRecord(uuid.uuid4().hex, self.node, self.instance) for tick in fire}
        new = store.new_state(state, last, self.node, len(fire), misfired)
        if not await store.claim(self.etcd, self.namespace, spec.name, seen, new, records):
            return  # another node claimed first
        self.states[spec.name] = new
        self._count(spec.name, "fired", len(fire))
        self._count(spec.name, "misfired", misfired)
        if result.misfired:
            log.warning(
                "schedule %s: %d tick(s) missed, not fired (catch-up %s)",
                spec.name,
                result.misfired,
                spec.catch_up,
            )
        if over:
            log.warning(
                "schedule %s: %d tick(s) not fired: %d of its ticks wait unstarted (is partition %s"
                " stopped or paused?)",
                spec.name,
                len(over),
                unstarted,
                spec.partition,
            )
        for tick, record in records.items():
            self.ticks[(spec.name, tick)] = record
            self._spawn(self._publish(spec, tick, record.firing))

    async def _take_over(self, spec: Schedule, tick: int, seen_record: TickRecord) -> None:
        try:
            key = keys.schedule_tick(self.namespace, spec.name, tick_label(tick))
            kv = await self.etcd.get(key)
            record = TickRecord.decode(kv.value) if kv is not None else None
            if kv is None or record != seen_record:
                return  # started, released or taken over meanwhile
            mine = TickRecord(uuid.uuid4().hex, self.node, self.instance)
            if not await store.take_over(self.etcd, self.namespace, spec.name, kv, mine):
                return
            log.warning(
                "schedule %s: node %s died before its job of tick %s started; firing it again",
                spec.name,
                record.by,
                tick_label(tick),
            )
            self.ticks[(spec.name, tick)] = mine
            await self._publish(spec, tick, mine.firing)
        except RogerError as e:
            log.warning("cannot take over tick %s of schedule %s (%s)", tick, spec.name, e)
        except Exception:  # a fault we did not map: keep it visible, keep the node
            log.exception("unexpected error taking over tick %s of schedule %s", tick, spec.name)
        finally:
            self._busy_ticks.discard((spec.name, tick))
            self._wake.set()

    # --- publishing

    def _job_class(self, spec: Schedule) -> type[Job] | None:
        try:
            return self.registry.resolve(spec.job)
        except UnknownJob:
            return None

    async def _publish(self, spec: Schedule, tick: int, firing: str) -> None:
        """Publish the tick's job until RabbitMQ confirmed it, while the record is ours."""
        job_id = tick_job_id(spec.name, tick)
        attempt = 0
        while True:
            try:
                message = tick_message(spec, self._job_class(spec), job_id, tick, firing)
                await self._enqueuer.one(message, spec.partition)
                log.debug(
                    "schedule %s fired job %s into %s",
                    spec.name,
                    job_id,
                    spec.partition,
                    extra={"job_id": job_id, "partition": spec.partition},
                )
                await self._published(spec, tick, firing)
                return
            except (DuplicateJob, UnroutableJob, JobError, ConfigError) as e:
                await self._give_up(spec, tick, firing, e)
                return
            except RogerError as e:
                (log.warning if attempt == 0 else log.debug)(
                    "cannot publish job %s of schedule %s yet (%s); trying again", job_id, spec.name, e
                )
            except Exception as e:  # the job class's queue_for or keys raised: it cannot be sent
                log.exception("schedule %s: the job class refused tick %s", spec.name, tick_label(tick))
                await self._give_up(spec, tick, firing, e)
                return
            record = self.ticks.get((spec.name, tick))
            if record is None or record.firing != firing:
                return  # removed, or taken over: not ours to publish any more
            await asyncio.sleep(PUBLISH_BACKOFF[min(attempt, len(PUBLISH_BACKOFF) - 1)])
            attempt += 1

    async def _published(self, spec: Schedule, tick: int, firing: str) -> None:
        """Mark the record published; if etcd refuses, the tick may be published again
        should this node die before its job starts (that copy runs, this one is dropped)."""
        try:
            await store.mark_published(self.etcd, self.namespace, spec.name, tick, firing)
        except RogerError as e:
            log.debug("cannot mark tick %s of schedule %s published (%s)", tick, spec.name, e)

    async def _give_up(self, spec: Schedule, tick: int, firing: str, error: Exception) -> None:
        """A tick whose job cannot be enqueued at all: its record goes, it counts as a misfire."""
        log.error(
            "schedule %s: cannot enqueue the job of tick %s (%s); tick skipped",
            spec.name,
            tick_label(tick),
            error,
        )
        self._count(spec.name, "misfired", 1)
        try:
            await store.release_tick(self.etcd, self.namespace, spec.name, tick, firing)
        except RogerError as e:
            log.warning("cannot delete the record of tick %s of schedule %s (%s)", tick, spec.name, e)

    def _count(self, name: str, what: str, n: int) -> None:
        if self.metrics is not None:
            self.metrics.schedule(name, what, n)
