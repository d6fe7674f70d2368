"""A live node fed garbage: every bad message ends in .buried with a reason, the node
serves the good jobs around them, nothing crashes."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import msgpack

from roger_cluster import Client, JobError
from roger_cluster.codec import JobMessage, encode
from roger_cluster.names import buried_queue_name, queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended
from tests import jobs

SEED = 20261129


def bad_bodies(rng: random.Random, count: int) -> list[bytes]:
    """Random bytes, mutated messages, maps with missing or mistyped fields, forbidden classes."""
    forbidden = encode(JobMessage("id-forbidden", "tests.jobs:NotAJob", {"x": 1}, "default"))
    templates: list[dict[str, Any]] = [
        {"v": 1},
        {"v": 1, "id": 1, "job": "tests.jobs:Record", "queue": "default", "retry_count": 0, "enqueued_at": 0},
        {
            "v": 2,
            "id": "x",
            "job": "tests.jobs:Record",
            "args": {},
            "queue": "default",
            "retry_count": 0,
            "enqueued_at": 0,
        },
        {
            "v": 1,
            "id": "x",
            "job": "os:system",
            "args": "true",
            "queue": "default",
            "retry_count": 0,
            "enqueued_at": 0,
        },
        {
            "v": 1,
            "id": "x",
            "job": "builtins:eval",
            "args": "1",
            "queue": "default",
            "retry_count": 0,
            "enqueued_at": 0,
        },
        {
            "v": 1,
            "id": "x",
            "job": "roger_cluster.demo:Sleep",
            "args": {},
            "queue": "default",
            "retry_count": 0,
            "enqueued_at": 0,
        },
    ]
    bodies = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            bodies.append(rng.randbytes(rng.randint(0, 300)))
        elif kind == 1:
            body = bytearray(forbidden)
            for _ in range(rng.randint(1, 4)):
                body[rng.randrange(len(body))] = rng.randrange(256)
            bodies.append(bytes(body))
        elif kind == 2:
            bodies.append(msgpack.packb(rng.choice(templates)))
        else:
            bodies.append(msgpack.packb([rng.random(), rng.randbytes(8), None]))
    return bodies


def odd_properties(rng: random.Random) -> dict[str, Any]:
    return rng.choice(
        [
            {},
            {"content_type": "application/json", "message_id": "m"},
            {"headers": {"x-roger-reason": 7, "nested": {"a": [1, 2]}}, "type": "tests.jobs:Record"},
            {"app_id": "other-partition", "content_encoding": "gzip"},
        ]
    )


async def test_garbage_is_buried_with_a_reason_and_good_jobs_still_run(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    rng = random.Random(SEED)
    node = await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 4})
    broker = await roger_client.broker()
    good = []
    bodies = bad_bodies(rng, 60)
    for i, body in enumerate(bodies):
        await broker.publish_bytes(body, queue_name(roger_partition, "default"), odd_properties(rng))
        if i % 10 == 0:
            job = jobs.Record.create({"ledger": str(ledger)})
            good.append(job)
            await roger_client.enqueue(job, roger_partition)

    await eventually(lambda: all(ended(ledger)[j.id] == 1 for j in good), timeout=30)

    async def all_buried() -> bool:
        stats = await broker.stats(buried_queue_name(roger_partition, "default"))
        return stats is not None and stats.ready == len(bodies)

    await eventually(all_buried, timeout=30)
    buried = await roger_client.buried(roger_partition, "default", limit=len(bodies))
    assert len(buried) == len(bodies) and all(b.reason for b in buried)
    assert node.returncode is None
    assert "Traceback" not in node.log()


async def test_arguments_over_the_size_limit_are_refused_at_enqueue(
    roger_client: Client, roger_partition: str
) -> None:
    await roger_client.start_partition(roger_partition, {"default": 1})
    big = jobs.Record.create({"ledger": "/dev/null", "blob": "x" * (1024 * 1024)})
    try:
        await roger_client.enqueue(big, roger_partition)
    except JobError as e:
        assert "over the limit of 1048576" in str(e)
    else:
        raise AssertionError("a job over 1 MiB was enqueued")
    stats = await (await roger_client.broker()).stats(queue_name(roger_partition, "default"))
    assert stats is not None and stats.ready == 0
