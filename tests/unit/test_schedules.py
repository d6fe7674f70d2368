"""Schedules as values: ticks of cron and of intervals, daylight saving, catch-up, errors.

Every computation takes the time as an argument: the clock is injected.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from roger_cluster.errors import ConfigError
from roger_cluster.names import check_job_id
from roger_cluster.schedules import (
    CATCH_UP_CAP,
    Schedule,
    Timetable,
    due,
    parse_every,
    parse_tick_label,
    tick_job_id,
    tick_label,
)

AMS = ZoneInfo("Europe/Amsterdam")


def local(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=AMS).timestamp()


def walk(table: Timetable, start: float, n: int) -> list[str]:
    """The next `n` ticks after `start`, as local times with their UTC offset."""
    out = []
    t = start
    for _ in range(n):
        t = table.next_after(t)
        out.append(datetime.fromtimestamp(t, AMS).isoformat())
    return out


def test_a_daily_seconds_cron_in_the_spring_gap_fires_once_when_the_gap_ends() -> None:
    # 2026-03-29 02:00 -> 03:00 in Amsterdam: 02:30:30 does not exist that day.
    table = Timetable("30 30 2 * * *", None, "Europe/Amsterdam")
    assert walk(table, local(2026, 3, 28, 12, 0), 3) == [
        "2026-03-29T03:00:30+02:00",
        "2026-03-30T02:30:30+02:00",
        "2026-03-31T02:30:30+02:00",
    ]


def test_a_daily_cron_in_the_repeated_autumn_hour_fires_once() -> None:
    # 2026-10-25 03:00 -> 02:00 in Amsterdam: 02:30:30 happens twice; it fires on the first pass.
    table = Timetable("30 30 2 * * *", None, "Europe/Amsterdam")
    assert walk(table, local(2026, 10, 24, 12, 0), 3) == [
        "2026-10-25T02:30:30+02:00",
        "2026-10-26T02:30:30+01:00",
        "2026-10-27T02:30:30+01:00",
    ]
    fold_second_pass = datetime(2026, 10, 25, 1, 45, tzinfo=UTC).timestamp()  # 02:45 +01:00
    assert table.last_at_or_before(fold_second_pass) == local(2026, 10, 25, 2, 30, 30)


def test_a_seconds_cron_on_every_hour_keeps_its_real_cadence_through_the_autumn_change() -> None:
    table = Timetable("*/20 * * * * *", None, "Europe/Amsterdam")
    start = datetime(2026, 10, 25, 0, 59, 30, tzinfo=UTC).timestamp()  # 02:59:30 +02:00
    ticks = [table.next_after(start)]
    for _ in range(3):
        ticks.append(table.next_after(ticks[-1]))
    assert [b - a for a, b in zip(ticks, ticks[1:], strict=False)] == [20, 20, 20]
    assert datetime.fromtimestamp(ticks[1], AMS).isoformat() == "2026-10-25T02:00:00+01:00"


def test_a_seconds_cron_on_every_hour_skips_no_real_time_in_the_spring_gap() -> None:
    table = Timetable("0 */30 * * * *", None, "Europe/Amsterdam")
    assert walk(table, local(2026, 3, 29, 1, 0), 2) == [
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
    ]


def test_five_field_cron_and_aliases_tick_on_the_minute() -> None:
    assert Timetable("*/5 * * * *", None).next_after(
        datetime(2026, 1, 1, 10, 3, 7, tzinfo=UTC).timestamp()
    ) == (datetime(2026, 1, 1, 10, 5, tzinfo=UTC).timestamp())
    hourly = Timetable("@hourly", None)
    at = datetime(2026, 1, 1, 10, 0, tzinfo=UTC).timestamp()
    assert hourly.next_after(at) == at + 3600
    assert hourly.last_at_or_before(at) == at


def test_every_ticks_are_aligned_to_multiples_of_the_interval_since_the_epoch() -> None:
    table = Timetable(None, 10)
    assert table.next_after(1_000_003.5) == 1_000_010
    assert table.next_after(1_000_010) == 1_000_020
    assert table.last_at_or_before(1_000_019.9) == 1_000_010
    assert table.ticks(1_000_000, 1_000_030, 10) == [1_000_010, 1_000_020, 1_000_030]
    assert table.count(1_000_000, 1_000_030) == 3


def every(seconds: int, catch_up: str = "latest", created_at: float = 1_000.0) -> Schedule:
    return Schedule("s", "p", "m:J", every=seconds, catch_up=catch_up, created_at=created_at)


def test_one_due_tick_fires_and_a_slightly_late_claim_fires_every_tick() -> None:
    assert due(every(10), 1_000, 1_010.3).fire == (1_010,)
    assert due(every(10), 1_010, 1_015).fire == ()
    late = due(every(1, "none"), 1_000, 1_003.5)  # three ticks, the oldest 2.5 s old: only late
    assert late.fire == (1_001, 1_002, 1_003) and late.misfired == 0


def test_catch_up_latest_fires_only_the_most_recent_missed_tick() -> None:
    result = due(every(10, "latest"), 1_000, 1_100.5)
    assert result.fire == (1_100,) and result.misfired == 9


def test_catch_up_none_fires_only_a_tick_due_within_the_grace() -> None:
    assert due(every(10, "none"), 1_000, 1_100.5).fire == (1_100,)
    skipped = due(every(10, "none"), 1_000, 1_105)
    assert skipped.fire == () and skipped.misfired == 10


def test_catch_up_all_fires_every_missed_tick_oldest_first_up_to_the_cap() -> None:
    result = due(every(10, "all"), 1_000, 1_100.5)
    assert result.fire == tuple(range(1_010, 1_101, 10)) and result.misfired == 0
    capped = due(every(1, "all"), 1_000, 1_000 + CATCH_UP_CAP + 50)
    assert len(capped.fire) == CATCH_UP_CAP and capped.fire[0] == 1_001 and capped.misfired == 50


def test_a_new_schedule_never_fires_ticks_from_before_it_was_added() -> None:
    assert due(every(10, created_at=1_005), None, 1_009).fire == ()
    assert due(every(10, created_at=1_005), None, 1_010).fire == (1_010,)
    assert due(every(10, "all", created_at=1_000), None, 1_000).fire == (1_000,)


def test_catch_up_with_cron_counts_the_missed_ticks() -> None:
    schedule = Schedule("s", "p", "m:J", cron="0 * * * *", created_at=0)
    last = int(datetime(2026, 1, 1, 0, tzinfo=UTC).timestamp())
    result = due(schedule, last, last + 5 * 3600 + 30)
    assert result.fire == (last + 5 * 3600,) and result.misfired == 4


def test_tick_job_ids_are_readable_valid_and_round_trip() -> None:
    tick = int(datetime(2026, 12, 24, 9, 0, 5, tzinfo=UTC).timestamp())
    assert tick_job_id("nightly_report", tick) == "nightly_report.20261224T090005Z"
    assert check_job_id(tick_job_id("x" * 80, tick))
    assert parse_tick_label(tick_label(tick)) == tick


def test_schedules_round_trip_through_their_etcd_value() -> None:
    schedule = Schedule(
        "s", "p", "m.jobs:J", {"a": [1]}, cron="*/5 * * * *", tz="Europe/Amsterdam", queue="q", catch_up="all"
    )
    assert Schedule.decode(schedule.encode()) == schedule
    assert schedule.stamped(5.0).created_at == 5.0


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"cron": "* * *"}, "has 3 fields"),
        ({"cron": "* * * * * * *"}, "has 7 fields"),
        ({"cron": "61 * * * *"}, "not valid"),
        ({"cron": "a b c d e"}, "not valid"),
        ({"cron": "0 0 30 2 *"}, "never fires"),
        ({"every": 5, "created_at": "yesterday"}, "created_at must be a Unix time"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "time zone 'Mars/Olympus' is unknown"),
        ({"cron": "* * * * *", "every": 5}, "either cron or every"),
        ({}, "either cron or every"),
        ({"every": 0}, "every must be whole seconds"),
        ({"every": 5, "catch_up": "some"}, "catch-up 'some'"),
        ({"every": 5, "job": "nocolon"}, "class path"),
        ({"every": 5, "name": "a-b"}, "schedule name 'a-b' is not allowed"),
        ({"every": 5, "name": "x" * 81}, "longer than 80"),
        ({"every": 5, "args": {1, 2}}, "args must be JSON"),
    ],
)
def test_bad_schedules_are_refused_with_a_clear_error(kwargs: dict[str, object], says: str) -> None:
    fields: dict[str, object] = {"name": "s", "partition": "p", "job": "m:J", **kwargs}
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        Schedule(**fields)  # type: ignore[arg-type]


def test_intervals_parse_with_units_and_refuse_anything_else() -> None:
    assert [parse_every(t) for t in ("10", "10s", "15m", "2h", "1d")] == [10, 10, 900, 7200, 86400]
    with pytest.raises(ConfigError, match="whole number"):
        parse_every("1.5s")
