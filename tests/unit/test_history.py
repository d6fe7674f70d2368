"""The job history's pure parts: the batch format, where a job is now, the recorder's
bounded buffer (against a broker that is not connected), the settings."""

from __future__ import annotations

import logging

import msgpack
import pytest

from roger_cluster.broker import Broker
from roger_cluster.cli.node import parse_size
from roger_cluster.config import AmqpConfig, HistoryConfig
from roger_cluster.errors import ConfigError, DecodeError
from roger_cluster.history import EventTuple, JobEvent, decode_batch, encode_batch, where_now
from roger_cluster.runtime.recorder import Recorder


def _event(kind: str, at: float = 100.0, **fields: object) -> EventTuple:
    delay = fields.get("delay")
    return (at, kind, "j1", "m:C", "p", "default", 1, 0.5, 90.0, None, None, None, delay)  # type: ignore[return-value]


def test_a_batch_round_trips_with_its_node() -> None:
    events = [_event("started"), _event("retried", 101.0, delay=3)]
    decoded = decode_batch(encode_batch("node1", events))
    assert decoded[0] == JobEvent(100.0, "started", "j1", "m:C", "p", "default", "node1", 1, 0.5, 90.0)
    assert (decoded[1].kind, decoded[1].delay, decoded[1].node) == ("retried", 3, "node1")


@pytest.mark.parametrize(
    "body",
    [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"v": 2, "node": "n", "events": []}),
     msgpack.packb({"v": 1, "node": "n", "events": [[1, 2]]})],
)  # fmt: skip
def test_a_body_that_is_not_a_batch_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_batch(body)


def _story(*kinds: str) -> list[JobEvent]:
    return [JobEvent(100.0 + i, k, "j1", "m:C", "p", "q", f"n{i}", 1, delay=5) for i, k in enumerate(kinds)]


def test_where_a_job_is_now_follows_its_last_event_unless_a_node_runs_it() -> None:
    assert where_now(_story("started"), "n9") == "running on n9"
    assert where_now(_story("started", "succeeded"), None) == "succeeded on n1"
    assert (
        where_now(_story("started", "retried"), None, now=102.0) == "waiting to retry (attempt 2, due in 4s)"
    )
    assert where_now(_story("started", "buried"), None) == "buried in p-q.buried"
    assert where_now(_story("started"), None).startswith("started on n0 without an end")
    assert where_now([], None).startswith("unknown")


async def test_the_recorder_drops_and_counts_what_rabbitmq_does_not_take_and_holds_a_bounded_buffer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = HistoryConfig(batch_size=2, buffer=4)
    unreachable = AmqpConfig(url="amqp://guest:guest@127.0.0.1:1/", connect_timeout=2)
    recorder = Recorder(Broker(unreachable), "ns", "node1", config)  # cannot connect
    for _ in range(10):
        recorder.add(_event("started"))
    assert (len(recorder._events), recorder.dropped) == (4, 6)  # bounded: the rest counted
    with caplog.at_level(logging.WARNING):
        await recorder._flush()  # one batch refused: dropped, the rest waits for the next flush
        assert (recorder.dropped, recorder.sent, len(recorder._events)) == (8, 0, 2)
        await recorder._flush()
    assert (recorder.dropped, recorder.sent, len(recorder._events)) == (10, 0, 0)
    dropping = [r for r in caplog.records if "dropping events" in r.getMessage()]
    assert len(dropping) == 1  # one line when dropping starts, not one per batch
    recorder.add(_event("started"))
    await recorder.stop(timeout=0)
    assert recorder.dropped == 11 and not recorder._events


def test_history_settings_are_checked_and_sizes_parse() -> None:
    assert parse_size("1GiB") == 1024**3
    assert parse_size("500MB") == 500 * 1000**2
    assert parse_size("2048") == 2048
    for bad in ("", "1XB", "-3MB", "MB"):
        with pytest.raises(ConfigError):
            parse_size(bad)
    with pytest.raises(ConfigError):
        HistoryConfig(max_age=10)
    with pytest.raises(ConfigError):
        HistoryConfig(max_bytes=1000)
    with pytest.raises(ConfigError):
        HistoryConfig(batch_size=10, buffer=5)
