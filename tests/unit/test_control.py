"""The control protocol without I/O: wire format, answers, names, formatting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack
import pytest

from roger_cluster.broker import Broker
from roger_cluster.cli.info import duration
from roger_cluster.config import AmqpConfig
from roger_cluster.control import (
    ControlServer,
    RemoteError,
    RunningJob,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from roger_cluster.errors import ConfigError, DecodeError
from roger_cluster.names import control_queue_name


def server() -> ControlServer:
    async def echo(args: Mapping[str, Any]) -> Any:
        return dict(args)

    async def broken(args: Mapping[str, Any]) -> Any:
        raise ValueError("broken on purpose")

    return ControlServer(Broker(AmqpConfig()), "ns", "n1", {"echo": echo, "broken": broken})


def test_a_request_round_trips_and_garbage_is_a_decode_error() -> None:
    assert decode_request(encode_request("running", {"partition": "p"})) == ("running", {"partition": "p"})
    for body in (b"\xc1", msgpack.packb([1]), msgpack.packb({"v": 2, "op": "x", "args": {}})):
        with pytest.raises(DecodeError):
            decode_request(body)
    with pytest.raises(DecodeError):
        decode_request(msgpack.packb({"v": 1, "op": 3, "args": {}}))


def test_a_reply_carries_a_result_or_an_error() -> None:
    assert decode_reply(encode_reply("n1", [1, 2])) == [1, 2]
    with pytest.raises(RemoteError, match="nope"):
        decode_reply(encode_reply("n1", error="nope"))


async def test_the_server_answers_known_ops_and_names_unknown_and_failing_ones() -> None:
    control = server()
    assert decode_reply(await control.answer(encode_request("echo", {"a": 1}))) == {"a": 1}
    with pytest.raises(RemoteError, match="unknown op 'frob'.*broken, echo"):
        decode_reply(await control.answer(encode_request("frob", {})))
    with pytest.raises(RemoteError, match="broken failed: ValueError: broken on purpose"):
        decode_reply(await control.answer(encode_request("broken", {})))
    with pytest.raises(RemoteError, match="not valid msgpack"):
        decode_reply(await control.answer(b"\xc1"))


def test_a_running_job_from_a_node_is_checked() -> None:
    job = RunningJob.from_wire(
        "n1",
        {"id": "j", "job": "m:C", "partition": "p", "queue": "q", "started_at": 1.0, "elapsed": 2.0},
    )
    assert (job.node, job.queue, job.retry_count, job.enqueued_at) == ("n1", "q", 0, None)
    with pytest.raises(DecodeError):
        RunningJob.from_wire("n1", {"id": "j"})
    with pytest.raises(DecodeError):
        RunningJob.from_wire("n1", ["not", "a", "map"])


def test_control_queue_names_carry_namespace_and_node() -> None:
    assert control_queue_name("roger", "web-1.example.com") == "roger.roger.control.web-1.example.com"
    with pytest.raises(ConfigError):
        control_queue_name("roger", "bad name")
    with pytest.raises(ConfigError):
        control_queue_name("x" * 250, "n1")


def test_durations_are_short() -> None:
    assert [duration(s) for s in (0.04, 59.9, 61, 3725)] == ["0.0s", "59.9s", "1m01s", "1h02m"]
