"""Recurring schedules as values: what a schedule is, and which ticks are due when.

Every node computes the same ticks from the same schedule, so ticks are whole
Unix seconds that depend only on the schedule, never on when a node looked:
a cron expression read in the schedule's time zone (croniter with zoneinfo),
or `every` N seconds aligned to multiples of N since the epoch. Which node
fires a tick is decided in etcd (`cluster/schedules.py`); this module is pure,
and takes `now` as an argument, so the rules (daylight saving, catch-up) are
unit-tested with an injected clock.

Daylight saving, as croniter does it plus one rule of ours:
- a local time that does not exist (spring forward) fires once, when the gap
  ends (`30 2 * * *` fires at 03:00 that day, `30 30 2 * * *` at 03:00:30);
- a local time that happens twice (fall back) fires once, on its first
  pass, when the hour field names hours; with every hour (`*`) both passes fire,
  so an every-20-seconds schedule keeps firing every 20 real seconds
  (cronie's rule; croniter alone would fire `30 2 * * *` twice that night).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from .codec import JobMessage
from .errors import ConfigError
from .job import Job
from .names import check_partition, check_queue, check_schedule

CATCH_UP = ("none", "latest", "all")
# `all` fires at most this many missed ticks at one claim; the rest are misfires.
CATCH_UP_CAP = 100
MAX_EVERY = 366 * 24 * 3600
# How late a tick may be claimed and still count as on time under catch-up `none`.
GRACE = 1.0
# Due ticks at most this old were not missed, only claimed a little late: they all fire.
LAG = 5.0
# Counting missed ticks stops here (a seconds cron down for a week has 604,800).
COUNT_LIMIT = 100_000
_PROBE = 946_684_800  # 2000-01-01: an expression with no tick in the next years never fires
_JOB_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> int:
    """`90`, `90s`, `15m`, `2h`, `1d` as whole seconds; ConfigError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(text))
    if not match:
        raise ConfigError(f"interval {text!r} is not a whole number of s, m, h or d (like 10s, 5m, 2h)")
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def tick_label(tick: int) -> str:
    """A tick as `YYYYmmddTHHMMSSZ` (UTC): in job ids and etcd keys, sorting like the ticks."""
    return datetime.fromtimestamp(tick, UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_tick_label(label: str) -> int:
    """The tick of a `tick_label`; ConfigError if it is not one."""
    try:
        return int(datetime.strptime(label, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError as e:
        raise ConfigError(f"{label!r} is not a tick (YYYYmmddTHHMMSSZ)") from e


def tick_job_id(name: str, tick: int) -> str:
    """The job id of a schedule's tick: the same for every copy fired for it."""
    return f"{check_schedule(name)}.{tick_label(tick)}"


def _cron(expression: str) -> croniter:
    """A croniter for a 5-field expression, or 6 fields with the seconds first."""
    text = " ".join(str(expression).split())
    fields = len(text.split(" "))
    if not text.startswith("@") and fields not in (5, 6):
        raise ConfigError(
            f"cron expression {expression!r} has {fields} fields: give 5 (minute hour day month weekday)"
            " or 6 (second first), or an alias like @hourly"
        )
    try:
        return croniter(text, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=True)
    except (CroniterError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"cron expression {expression!r} is not valid: {e}") from e


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f"time zone {name!r} is unknown (use an IANA name like Europe/Amsterdam)") from e


@dataclass(frozen=True)
class Schedule:
    """A recurring job: `job` (`module:Class`) with `args`, into `partition`, at every
    tick of `cron` (in `tz`) or of `every` seconds. Validated when made."""

    name: str
    """The schedule's name: letters, digits and _."""
    partition: str
    """The partition its jobs go to."""
    job: str
    """The job class, as `module:Class`."""
    args: Any = None
    """The arguments of each job it fires."""
    cron: str | None = None
    """A cron expression (5 fields, 6 with seconds first, or `@hourly`...); or use `every`."""
    every: int | None = None
    """A fixed interval in seconds; or use `cron`."""
    tz: str = "UTC"
    """The time zone of `cron`."""
    queue: str | None = None  # default: the job class's own queue
    """The queue of the partition; None: the job class's own queue."""
    catch_up: str = "latest"  # missed ticks after the whole cluster was down: none | latest | all
    """Ticks missed while the whole cluster was down: `none`, `latest` or `all` (at most 100)."""
    paused: bool = False
    """A paused schedule fires nothing."""
    created_at: float = 0.0  # no tick before this fires; 0: set when stored
    """No tick before this fires (Unix time); 0: set when stored."""
    _timetable: Timetable | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_schedule(self.name)
        check_partition(self.partition)
        if not isinstance(self.job, str) or not _JOB_PATH.fullmatch(self.job):
            raise ConfigError(f"job {self.job!r} must be a class path like myapp.jobs:SendMail")
        if self.queue is not None:
            check_queue(self.queue)
        if self.catch_up not in CATCH_UP:
            raise ConfigError(f"catch-up {self.catch_up!r} must be one of {', '.join(CATCH_UP)}")
        if (self.cron is None) == (self.every is None):
            raise ConfigError(f"schedule {self.name}: give either cron or every, not both or neither")
        if self.every is not None and (
            isinstance(self.every, bool)
            or not isinstance(self.every, int)
            or not 1 <= self.every <= MAX_EVERY
        ):
            raise ConfigError(f"every must be whole seconds from 1 to {MAX_EVERY}, got {self.every!r}")
        created = self.created_at
        if isinstance(created, bool) or not isinstance(created, int | float) or created < 0:
            raise ConfigError(f"created_at must be a Unix time, got {created!r}")
        try:
            json.dumps(self.args)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"schedule {self.name}: args must be JSON: {e}") from e
        object.__setattr__(self, "_timetable", Timetable(self.cron, self.every, self.tz))

    @property
    def timetable(self) -> Timetable:
        """When this schedule ticks."""
        assert self._timetable is not None
        return self._timetable

    @property
    def start(self) -> int:
        """Ticks before this second never fire (the schedule did not exist yet)."""
        return math.ceil(self.created_at)

    def describe(self) -> str:
        """`cron "…" (tz)` or `every Ns`, for listings."""
        if self.cron is not None:
            return f"cron {self.cron!r}" + ("" if self.tz == "UTC" else f" ({self.tz})")
        return f"every {self.every}s"

    def encode(self) -> bytes:
        """The JSON value of the schedule's etcd key."""
        fields = {name: getattr(self, name) for name in _FIELDS}  # not asdict: no deep copies
        return json.dumps(fields, sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes) -> Schedule:
        """A schedule read from etcd; ConfigError if it is not one."""
        try:
            fields = json.loads(value)
            if not isinstance(fields, dict):
                raise ValueError("not an object")
            return cls(**{k: v for k, v in fields.items() if k in _FIELDS})
        except (ValueError, TypeError) as e:
            raise ConfigError(f"stored schedule is not valid: {e}") from e

    def stamped(self, now: float | None = None) -> Schedule:
        """This schedule with `created_at` set (to now) if it was not."""
        return self if self.created_at else replace(self, created_at=now or time.time())


_FIELDS = frozenset(f for f in Schedule.__dataclass_fields__ if not f.startswith("_"))


@dataclass(frozen=True)
class Due:
    """What a claim at `now` fires: `fire` (oldest first) and how many ticks it skips."""

    fire: tuple[int, ...]
    misfired: int


class Timetable:
    """The ticks of a cron expression in a time zone, or of a fixed interval."""

    def __init__(self, cron: str | None, every: int | None, tz: str = "UTC") -> None:
        self.every = every
        self.zone = _zone(tz)
        self._cron = _cron(cron) if cron is not None else None
        self._every_hour = False
        if self._cron is not None:
            hours = self._cron.expanded[1]  # [minute, hour, day, month, weekday(, second)]
            self._every_hour = hours == ["*"] or len(hours) == 24
            try:
                self.next_after(_PROBE)
            except CroniterError as e:  # February 30th: croniter gives up after years of search
                raise ConfigError(f"cron expression {cron!r} never fires") from e

    def next_after(self, t: float) -> int:
        """The first tick strictly after `t`."""
        if self.every is not None:
            return (int(t) // self.every + 1) * self.every
        assert self._cron is not None
        at = datetime.fromtimestamp(int(t), self.zone)
        while True:
            tick = int(self._cron.get_next(float, start_time=at))
            if not self._second_pass(tick):
                return tick
            at = datetime.fromtimestamp(tick, self.zone)

    def last_at_or_before(self, t: float) -> int:
        """The latest tick at or before `t`."""
        if self.every is not None:
            return int(t) // self.every * self.every
        assert self._cron is not None
        at = datetime.fromtimestamp(int(t) + 1, self.zone)
        while True:
            tick = int(self._cron.get_prev(float, start_time=at))
            if not self._second_pass(tick):
                return tick
            at = datetime.fromtimestamp(tick, self.zone)

    def _second_pass(self, tick: int) -> bool:
        """Whether `tick` is a local time's second occurrence (fall back) that must not
        fire again: the hour field names hours, and the wall time already came once."""
        if self._every_hour:
            return False
        local = datetime.fromtimestamp(tick, self.zone).replace(tzinfo=None)
        first = local.replace(tzinfo=self.zone, fold=0).timestamp()
        second = local.replace(tzinfo=self.zone, fold=1).timestamp()
        return first != second and tick == max(first, second)

    def ticks(self, after: float, until: float, limit: int) -> list[int]:
        """Up to `limit` ticks in (after, until], oldest first."""
        out: list[int] = []
        tick = self.next_after(after)
        while tick <= until and len(out) < limit:
            out.append(tick)
            tick = self.next_after(tick)
        return out

    def count(self, after: float, until: float) -> int:
        """How many ticks lie in (after, until] (at most COUNT_LIMIT)."""
        if until <= after:
            return 0
        if self.every is not None:
            return min(int(until) // self.every - int(after) // self.every, COUNT_LIMIT)
        return len(self.ticks(after, until, COUNT_LIMIT))


def due(schedule: Schedule, last: int | None, now: float) -> Due:
    """The ticks a claim at `now` fires, by the schedule's catch-up policy.

    Due are the ticks in (last, now], or from the schedule's creation when it
    never fired. When the oldest is at most LAG seconds old, the cluster is
    only a little late (a slow claim, an etcd election): all fire. Older means
    ticks were missed (the whole cluster was down): `none` fires only a tick at
    most GRACE seconds (or the interval, if shorter) old, `latest` the most
    recent, `all` each, oldest first, up to CATCH_UP_CAP. A single due tick
    always fires. Every tick not fired counts as a misfire.
    """
    table = schedule.timetable
    after = last if last is not None else schedule.start - 1
    latest = table.last_at_or_before(now)
    if latest <= after:
        return Due((), 0)
    oldest = table.next_after(after)
    if oldest == latest:
        return Due((latest,), 0)
    total = table.count(after, latest)
    if now - oldest <= LAG or schedule.catch_up == "all":
        fire = table.ticks(after, now, CATCH_UP_CAP)
        return Due(tuple(fire), total - len(fire))
    if schedule.catch_up == "latest":
        return Due((latest,), total - 1)
    grace = min(GRACE, schedule.every) if schedule.every is not None else GRACE
    if now - latest <= grace:
        return Due((latest,), total - 1)
    return Due((), total)


def rank(node: str, name: str, tick: int, nodes: Iterable[str]) -> int:
    """This node's place (0 first) among `nodes` for firing `tick` of schedule `name`:
    rendezvous hashing, so every node agrees without talking and a dead node's
    ticks spread over the others."""
    key = f"{name}/{tick}"

    def weight(n: str) -> bytes:
        return hashlib.sha256(f"{n}\0{key}".encode()).digest()

    mine = weight(node)
    return sum(1 for n in set(nodes) if n != node and weight(n) > mine)


def tick_message(
    schedule: Schedule, job_class: type[Job] | None, job_id: str, tick: int | None, firing: str | None
) -> JobMessage:
    """The job message a schedule fires: for a tick (`tick`, `firing` set), or at once
    (`run-now`: both None). `job_class` is None when this process cannot run the class:
    the message then goes to `schedule.queue` (or `default`) without keys, and a node
    that cannot run it either buries it as unknown."""
    if job_class is not None:
        message = JobMessage.from_job(job_class(schedule.args, job_id=job_id), schedule.queue)
    else:
        queue = schedule.queue or "default"
        message = JobMessage(job_id, schedule.job, schedule.args, queue, enqueued_at=time.time())
    return replace(message, scheduled_at=tick, schedule=schedule.name, firing=firing)
