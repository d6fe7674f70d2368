"""Managing recurring schedules from a client: store, list, pause, remove, run now.

The client's schedule calls (`Client.put_schedule` and friends) live here, so
the facade stays a facade. A schedule is only data in etcd: the nodes see a
change through their watch at once and fire from it (`scheduler.py`); nothing
here fires a tick. `run_now` enqueues one job outside the ticks: a fresh id,
the schedule's name in its context, no tick and no firing nonce.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .cluster import schedules as store
from .cluster.etcd import Etcd
from .cluster.schedules import ScheduleState
from .codec import JobMessage
from .job import Job, new_job_id
from .schedules import Schedule, tick_message


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule with what the cluster did with it."""

    schedule: Schedule
    """The schedule as stored."""
    next_fire: int | None  # the next tick (Unix time); None while paused
    """The next tick (Unix time); None while paused."""
    last_fired: int | None  # the last claimed tick
    """The last claimed tick (Unix time), if any."""
    last_by: str  # the node that claimed it
    """The node that claimed it."""
    fired: int
    """Ticks fired so far."""
    misfired: int
    """Ticks skipped (missed while the cluster was down, beyond `catch_up`)."""

    @property
    def name(self) -> str:
        """The schedule's name."""
        return self.schedule.name

    @property
    def paused(self) -> bool:
        """Whether the schedule is paused."""
        return self.schedule.paused


def info(schedule: Schedule, state: ScheduleState | None, now: float) -> ScheduleInfo:
    """What `rogerctl schedule list` shows of one schedule at `now`."""
    state = state or ScheduleState()
    after = max(now, state.last if state.last is not None else schedule.start - 1)
    upcoming = None if schedule.paused else schedule.timetable.next_after(after)
    return ScheduleInfo(schedule, upcoming, state.last, state.by, state.fired, state.misfired)


def loaded_class(path: str) -> type[Job] | None:
    """The Job class `module:Class` if this process has its module imported already."""
    module_name, _, qualname = path.partition(":")
    target: object = sys.modules.get(module_name)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target if isinstance(target, type) and issubclass(target, Job) else None


class Schedules:
    """The schedule calls of one client (connects on first use, through its getters)."""

    def __init__(
        self,
        etcd: Callable[[], Awaitable[Etcd]],
        namespace: str,
        enqueue: Callable[[JobMessage, str], Awaitable[str]],
    ) -> None:
        self._etcd = etcd
        self._namespace = namespace
        self._enqueue = enqueue

    async def put(self, schedule: Schedule) -> Schedule:
        """Create or replace a schedule; returns it as stored (`created_at` set)."""
        return await store.put(await self._etcd(), self._namespace, schedule)

    async def ensure(self, schedule: Schedule) -> Schedule:
        """Create a schedule if none of its name exists; returns the one in force."""
        return await store.ensure(await self._etcd(), self._namespace, schedule)

    async def get(self, name: str) -> ScheduleInfo:
        """One schedule and its state; UnknownSchedule if there is none."""
        etcd = await self._etcd()
        schedule = await store.get(etcd, self._namespace, name)
        _, state = await store.read_state(etcd, self._namespace, name)
        return info(schedule, state, time.time())

    async def list(self) -> list[ScheduleInfo]:
        """Every schedule with its state, by name."""
        etcd = await self._etcd()
        schedules = await store.list_all(etcd, self._namespace)
        states = await store.states(etcd, self._namespace)
        now = time.time()
        return [info(s, states.get(s.name), now) for s in schedules]

    async def set_paused(self, name: str, paused: bool) -> Schedule:
        """Pause or resume; UnknownSchedule if there is none."""
        return await store.set_paused(await self._etcd(), self._namespace, name, paused)

    async def remove(self, name: str) -> None:
        """Delete a schedule with its state and tick records; UnknownSchedule if none."""
        await store.remove(await self._etcd(), self._namespace, name)

    async def run_now(self, name: str) -> str:
        """Enqueue the schedule's job once, now (not a tick); returns the job id."""
        schedule = await store.get(await self._etcd(), self._namespace, name)
        message = tick_message(schedule, loaded_class(schedule.job), new_job_id(), None, None)
        return await self._enqueue(message, schedule.partition)
