"""The pure parts around schedules: node ranking, tick records and states, the release
queue's two body versions, the message a tick fires, what `schedule list` shows."""

from __future__ import annotations

from collections import Counter

import pytest

from roger_cluster.cluster.schedules import ScheduleState, TickRecord
from roger_cluster.errors import DecodeError
from roger_cluster.runtime.release import (
    decode_release,
    decode_tick_release,
    encode_release,
    encode_tick_release,
    release_version,
)
from roger_cluster.schedule_admin import info
from roger_cluster.schedules import Schedule, rank, tick_job_id, tick_message
from tests import jobs

NODES = [f"node{i}" for i in range(5)]


def test_every_node_agrees_on_one_order_per_tick_and_the_first_rank_moves_between_ticks() -> None:
    for tick in range(0, 100, 10):
        assert sorted(rank(n, "beat", tick, NODES) for n in NODES) == list(range(5))
    firsts = Counter(next(n for n in NODES if rank(n, "beat", t, NODES) == 0) for t in range(1000))
    assert set(firsts) == set(NODES) and min(firsts.values()) > 100  # spread, not one leader


def test_a_node_missing_from_the_live_set_still_gets_a_rank() -> None:
    assert 0 <= rank("newcomer", "beat", 5, NODES) <= len(NODES)


def test_tick_records_and_states_round_trip_and_garbage_reads_as_nothing() -> None:
    record = TickRecord("f1", "node1", "i1", started="node2")
    assert TickRecord.decode(record.encode()) == record
    assert TickRecord.decode(b"{not json") is None
    assert TickRecord.decode(b'{"firing": "f"}') is None
    state = ScheduleState(100, "node1", 5.0, 3, 2)
    assert ScheduleState.decode(state.encode()) == state
    assert ScheduleState.decode(b"[]") == ScheduleState()
    assert ScheduleState.decode(None) == ScheduleState()


def test_the_release_queue_carries_queue_keys_as_version_1_and_tick_records_as_version_2() -> None:
    key = encode_release("p", "k", "job1")
    tick = encode_tick_release("beat", 1_000, "f1")
    assert (release_version(key), release_version(tick), release_version(b"\xc1")) == (1, 2, None)
    assert decode_release(key) == ("p", "k", "job1")
    assert decode_tick_release(tick) == ("beat", 1_000, "f1")
    with pytest.raises(DecodeError, match="not a version 1 map"):
        decode_release(tick)
    with pytest.raises(DecodeError, match="not a version 2 map"):
        decode_tick_release(key)


def test_a_tick_message_carries_the_tick_the_schedule_and_the_nonce() -> None:
    schedule = Schedule("beat", "p", jobs.Unique.path(), {"ledger": "/dev/null", "key": "k"}, every=10)
    message = tick_message(schedule, jobs.Unique, tick_job_id("beat", 1_000), 1_000, "f1")
    assert (message.id, message.scheduled_at, message.schedule, message.firing) == (
        "beat.19700101T001640Z", 1_000, "beat", "f1",
    )  # fmt: skip
    assert message.queue == "default" and message.queue_key == "k"  # the class's own keys
    unknown = tick_message(schedule, None, "x", None, None)
    assert (unknown.job, unknown.queue, unknown.queue_key, unknown.firing) == (
        jobs.Unique.path(),
        "default",
        None,
        None,
    )


def test_the_listing_shows_the_next_tick_unless_paused() -> None:
    schedule = Schedule("beat", "p", "m:J", every=60, created_at=1_000)
    shown = info(schedule, ScheduleState(1_020, "node1", 1_020.1, 1, 0), now=1_030)
    assert (shown.next_fire, shown.last_fired, shown.last_by) == (1_080, 1_020, "node1")
    assert info(schedule, None, now=1_030).next_fire == 1_080
    paused = Schedule("beat", "p", "m:J", every=60, paused=True)
    assert info(paused, None, now=1_030).next_fire is None
