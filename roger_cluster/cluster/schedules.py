"""Recurring schedules in etcd: the specs, who fired which tick, and which copy may run.

Three prefixes (documented in docs/etcd-keys.md):

- `<ns>/schedules/<name>`: the schedule (`Schedule.encode`), written by operators;
- `<ns>/schedule-state/<name>`: the last claimed tick, by whom, and counters;
- `<ns>/schedule-ticks/<name>/<tick>`: a claimed tick whose job has not finished:
  the `firing` nonce of the one copy of its job that may run, who published it
  (`by`, `instance`) and who started it.

A tick fires exactly once because claiming it is one transaction: the state
must be as the claimer read it (so `last` is older than the tick) and the
tick record absent; the winner moves `last` and creates the record. A node
that dies before publishing leaves an unstarted record naming it; a live node
takes it over with a transaction on the record's revision and publishes again
under a new nonce. The node that dequeues a tick's job runs it only if the
record names that copy's nonce (`check_firing`), so of two published copies
one runs and the other is dropped as a duplicate; the record goes when the
job leaves for good (`release_tick`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace

from ..errors import UnknownSchedule
from ..schedules import Schedule, tick_label
from . import keys
from .etcd import Etcd, KeyValue, exists, op_delete, op_delete_prefix, op_put, unchanged

CHECK_ATTEMPTS = 5


@dataclass(frozen=True)
class ScheduleState:
    """What the cluster did with a schedule: its last claimed tick and counters."""

    last: int | None = None
    by: str = ""
    at: float = 0.0
    fired: int = 0
    misfired: int = 0

    def encode(self) -> bytes:
        """The JSON value of the state key."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes | None) -> ScheduleState:
        """A state read from etcd; an unreadable one reads as never fired."""
        try:
            data = json.loads(value or b"{}")
            last = data.get("last")
            return cls(
                last=int(last) if last is not None else None,
                by=str(data.get("by", "")),
                at=float(data.get("at", 0.0)),
                fired=int(data.get("fired", 0)),
                misfired=int(data.get("misfired", 0)),
            )
        except (ValueError, TypeError, AttributeError):
            return cls()


@dataclass(frozen=True)
class TickRecord:
    """A claimed tick: the copy of its job that may run, and who published it."""

    firing: str
    by: str
    instance: str
    started: str | None = None  # the node that started the job
    published: bool = False  # RabbitMQ confirmed this copy: nobody need publish the tick again

    def encode(self) -> bytes:
        """The JSON value of the tick key."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes) -> TickRecord | None:
        """A record read from etcd; None if it is not one."""
        try:
            data = json.loads(value)
            started = data.get("started")
            return cls(
                str(data["firing"]),
                str(data["by"]),
                str(data["instance"]),
                started and str(started),
                bool(data.get("published", False)),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


async def put(etcd: Etcd, namespace: str, schedule: Schedule) -> Schedule:
    """Store (create or replace) a schedule; returns it as stored (`created_at` set)."""
    stored = schedule.stamped()
    await etcd.put(keys.schedule(namespace, stored.name), stored.encode())
    return stored


async def ensure(etcd: Etcd, namespace: str, schedule: Schedule) -> Schedule:
    """Store a schedule only if none of its name exists (one create-if-absent); returns
    the schedule in force, so an app that ensures it at every start keeps an operator's
    changes (a pause, another cron)."""
    stored = schedule.stamped()
    holder = await etcd.create(keys.schedule(namespace, stored.name), stored.encode())
    return stored if holder is None else Schedule.decode(holder.value)


async def get(etcd: Etcd, namespace: str, name: str) -> Schedule:
    """The stored schedule; UnknownSchedule if there is none."""
    kv = await etcd.get(keys.schedule(namespace, name))
    if kv is None:
        raise UnknownSchedule(f"no schedule named {name!r}")
    return Schedule.decode(kv.value)


async def states(etcd: Etcd, namespace: str) -> dict[str, ScheduleState]:
    """Every schedule's state, by name."""
    prefix = keys.schedule_states_prefix(namespace)
    kvs, _ = await etcd.get_prefix(prefix)
    return {keys.name_of(prefix, kv.key): ScheduleState.decode(kv.value) for kv in kvs}


async def list_all(etcd: Etcd, namespace: str) -> list[Schedule]:
    """Every stored schedule that decodes, by name."""
    prefix = keys.schedules_prefix(namespace)
    kvs, _ = await etcd.get_prefix(prefix)
    out = []
    for kv in kvs:
        try:
            out.append(Schedule.decode(kv.value))
        except ValueError:
            continue  # `rogerctl doctor` territory; nodes skip it too
    return sorted(out, key=lambda s: s.name)


async def set_paused(etcd: Etcd, namespace: str, name: str, paused: bool) -> Schedule:
    """Pause or resume a schedule (reads, then one transaction on what was read).

    Resuming moves the state's last tick up to now: the ticks that passed while
    paused are skipped, not caught up.
    """
    key = keys.schedule(namespace, name)
    state_key = keys.schedule_state(namespace, name)
    while True:
        kv = await etcd.get(key)
        if kv is None:
            raise UnknownSchedule(f"no schedule named {name!r}")
        old = Schedule.decode(kv.value)
        schedule = replace(old, paused=paused)
        seen, state = await read_state(etcd, namespace, name)
        compare = [unchanged(key, kv), unchanged(state_key, seen)]
        success = [op_put(key, schedule.encode())]
        latest = schedule.timetable.last_at_or_before(time.time())
        resumed = old.paused and not paused and latest >= schedule.start
        if resumed and (state.last is None or state.last < latest):
            success.append(op_put(state_key, replace(state, last=latest).encode()))
        done, _ = await etcd.txn(compare, success)
        if done:
            return schedule


async def remove(etcd: Etcd, namespace: str, name: str) -> None:
    """Delete a schedule, its state and its tick records (queued copies of its ticks'
    jobs then find no record and are dropped as duplicates)."""
    key = keys.schedule(namespace, name)
    gone = [op_delete(key), op_delete(keys.schedule_state(namespace, name))]
    gone.append(op_delete_prefix(keys.schedule_ticks_prefix(namespace, name)))
    done, _ = await etcd.txn([exists(key)], gone)  # all at once: no state or record outlives it
    if not done:
        raise UnknownSchedule(f"no schedule named {name!r}")


async def read_state(etcd: Etcd, namespace: str, name: str) -> tuple[KeyValue | None, ScheduleState]:
    """A schedule's state key (None if absent) and its value."""
    kv = await etcd.get(keys.schedule_state(namespace, name))
    return kv, ScheduleState.decode(kv.value if kv else None)


async def claim(
    etcd: Etcd,
    namespace: str,
    name: str,
    seen: KeyValue | None,
    state: ScheduleState,
    records: dict[int, TickRecord],
) -> bool:
    """Move the state to `state` and create a record per fired tick, if the schedule still
    exists, its state key is still as `seen` and none of those records exists: one
    transaction."""
    state_key = keys.schedule_state(namespace, name)
    tick_keys = {tick: keys.schedule_tick(namespace, name, tick_label(tick)) for tick in records}
    compare = [exists(keys.schedule(namespace, name)), unchanged(state_key, seen)]
    compare += [unchanged(k, None) for k in tick_keys.values()]
    success = [op_put(state_key, state.encode())]
    success += [op_put(tick_keys[tick], record.encode()) for tick, record in records.items()]
    done, _ = await etcd.txn(compare, success)
    return done


async def take_over(etcd: Etcd, namespace: str, name: str, seen: KeyValue, record: TickRecord) -> bool:
    """Replace an unstarted tick record of a dead node by ours, if it is still as `seen`."""
    done, _ = await etcd.txn([unchanged(seen.key, seen)], [op_put(seen.key, record.encode())])
    return done


async def check_firing(etcd: Etcd, namespace: str, name: str, tick: int, firing: str, node: str) -> bool:
    """Whether the copy `firing` of a tick's job may run: its record names it. Marks the
    record started (by `node`) the first time, so no node takes the tick over any more.
    False when another copy is the one, or the record is gone (the tick's job finished)."""
    key = keys.schedule_tick(namespace, name, tick_label(tick))
    for _ in range(CHECK_ATTEMPTS):
        kv = await etcd.get(key)
        record = TickRecord.decode(kv.value) if kv is not None else None
        if kv is None or record is None or record.firing != firing:
            return False
        if record.started is not None:
            return True  # a retry, a redelivery, or the step after a park
        started = replace(record, started=node)
        done, _ = await etcd.txn([unchanged(key, kv)], [op_put(key, started.encode())])
        if done:
            return True
    return False  # the record kept changing under us: it is being taken over


async def mark_published(etcd: Etcd, namespace: str, name: str, tick: int, firing: str) -> None:
    """Note in the tick's record that RabbitMQ holds the copy `firing`, so the tick is not
    published again if its publisher dies while the job waits in its queue."""
    key = keys.schedule_tick(namespace, name, tick_label(tick))
    for _ in range(CHECK_ATTEMPTS):
        kv = await etcd.get(key)
        record = TickRecord.decode(kv.value) if kv is not None else None
        if kv is None or record is None or record.firing != firing or record.started or record.published:
            return
        done, _ = await etcd.txn(
            [unchanged(key, kv)], [op_put(key, replace(record, published=True).encode())]
        )
        if done:
            return


async def release_tick(etcd: Etcd, namespace: str, name: str, tick: int, firing: str) -> None:
    """Delete a tick record once its job left for good, if it still names that copy."""
    key = keys.schedule_tick(namespace, name, tick_label(tick))
    for _ in range(CHECK_ATTEMPTS):
        kv = await etcd.get(key)
        record = TickRecord.decode(kv.value) if kv is not None else None
        if kv is None or record is None or record.firing != firing:
            return
        done, _ = await etcd.txn([unchanged(key, kv)], [op_delete(key)])
        if done:
            return


def new_state(old: ScheduleState, last: int, node: str, fired: int, misfired: int) -> ScheduleState:
    """The state after a claim by `node`."""
    return ScheduleState(last, node, time.time(), old.fired + fired, old.misfired + misfired)
