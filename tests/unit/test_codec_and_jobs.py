"""The wire format and the job allowlist: pure code, no I/O."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import msgpack
import pytest

from roger_cluster import ConfigError, DecodeError, Job, JobError, JobRegistry, UnknownJob
from roger_cluster.codec import FORMAT_VERSION, JobMessage, decode, encode
from roger_cluster.runtime.slots import Slots
from tests import jobs


def test_a_message_round_trips_through_msgpack() -> None:
    job = jobs.OtherQueue.create({"ledger": "/tmp/x", "n": [1, 2.5, None, "é"]})
    message = JobMessage.from_job(job)
    assert message.queue == "other"
    assert message.job == "tests.jobs:OtherQueue"
    assert decode(encode(message)) == message


def test_queue_for_picks_the_queue_from_the_args() -> None:
    class ByPriority(Job):
        def queue_for(self, args: Any) -> str:
            return "urgent" if args["urgent"] else self.queue

    assert JobMessage.from_job(ByPriority.create({"urgent": True})).queue == "urgent"
    assert JobMessage.from_job(ByPriority.create({"urgent": False})).queue == "default"
    assert ByPriority.create({"urgent": True}).queue_type({"urgent": True}) == "urgent"  # the old name


def test_a_job_that_overrides_the_former_name_queue_type_still_decides_its_queue() -> None:
    with pytest.warns(DeprecationWarning, match="queue_type"):

        class Old(Job):
            def queue_type(self, args: Any) -> str:
                return "old" if args else super().queue_type(args)

    assert JobMessage.from_job(Old.create(1)).queue == "old"
    assert JobMessage.from_job(Old.create(0)).queue == "default"
    assert Old.create(1).queue_for(1) == "old"


def test_create_gives_every_job_a_unique_id() -> None:
    ids = {jobs.Record.create({}).id for _ in range(1000)}
    assert len(ids) == 1000


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"v": 99}),
        msgpack.packb({"v": FORMAT_VERSION, "id": 1}),
        msgpack.packb(
            {"v": FORMAT_VERSION, "id": "a", "job": "m:C", "queue": "q", "retry_count": 0, "enqueued_at": 1.0}
        ),
        msgpack.packb(
            {
                "v": FORMAT_VERSION,
                "id": "a",
                "job": "m:C",
                "queue": "q",
                "args": 1,
                "retry_count": True,
                "enqueued_at": 1.0,
            }
        ),
        msgpack.packb(
            {
                "v": FORMAT_VERSION,
                "id": "a",
                "job": "m:C",
                "queue": "q",
                "args": 1,
                "retry_count": 0,
                "enqueued_at": 1.0,
                "evil": 1,
            }
        ),
    ],
)
def test_decode_refuses_anything_that_is_not_a_job_message(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(body)


def test_encode_refuses_args_msgpack_cannot_carry_or_that_are_too_big() -> None:
    with pytest.raises(JobError, match="serialized"):
        encode(JobMessage.from_job(jobs.Record.create({"x": object()})))
    with pytest.raises(JobError, match="over the limit"):
        encode(JobMessage.from_job(jobs.Record.create({"x": "a" * 2000})), max_bytes=1000)


def test_registry_allows_only_job_subclasses_defined_in_the_given_modules() -> None:
    registry = JobRegistry.from_modules(["tests.jobs"])
    assert registry.resolve("tests.jobs:Record") is jobs.Record
    for name in ["tests.jobs:NotAJob", "tests.jobs:Job", "roger_cluster.demo:Sleep", "os:system"]:
        with pytest.raises(UnknownJob):
            registry.resolve(name)


def test_registry_reports_a_module_that_cannot_be_imported() -> None:
    with pytest.raises(ConfigError, match="cannot import"):
        JobRegistry.from_modules(["tests.no_such_module"])


def test_sync_and_async_perform_are_told_apart() -> None:
    assert jobs.Record.is_async()
    assert not jobs.SyncRecord.is_async()

    class Plain(Job):
        def perform(self, args: Any) -> None:
            return None

    assert not Plain.is_async()


async def test_slots_never_exceed_capacity_and_can_shrink_and_grow() -> None:
    slots = Slots(2)
    peak = 0

    async def use() -> None:
        nonlocal peak
        await slots.acquire()
        peak = max(peak, slots.in_use)
        await asyncio.sleep(0.01)
        await slots.release()

    await asyncio.gather(*(use() for _ in range(20)))
    assert peak == 2
    await slots.resize(5)
    peak = 0
    await asyncio.gather(*(use() for _ in range(20)))
    assert peak == 5
    await slots.wait_idle()
    assert slots.in_use == 0


def test_schedule_fields_are_written_only_when_set() -> None:
    plain = JobMessage(id="a", job="m:C", args=None, queue="q")
    assert set(msgpack.unpackb(encode(plain))) == {
        "v",
        "id",
        "job",
        "args",
        "queue",
        "queue_key",
        "execution_key",
        "retry_count",
        "enqueued_at",
    }
    fired = replace(plain, scheduled_at=1.5, schedule="nightly", firing="f1")
    assert decode(encode(fired)) == fired


def test_scheduled_at_must_be_a_number() -> None:
    body = msgpack.packb(
        {
            "v": FORMAT_VERSION,
            "id": "a",
            "job": "m:C",
            "queue": "q",
            "args": None,
            "retry_count": 0,
            "enqueued_at": 1.0,
            "scheduled_at": "soon",
        }
    )
    with pytest.raises(DecodeError, match="scheduled_at"):
        decode(body)
