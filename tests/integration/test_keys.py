"""Queue keys (unique jobs) and execution keys (serialized jobs) on real nodes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from roger_cluster import Client, DuplicateJob
from roger_cluster.cluster.execkeys import ExecKeys
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.consumers import consumers
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.rogerctl import rogerctl
from roger_cluster.testing.servers import EtcdEndpoint, RabbitEndpoint
from roger_cluster.testing.wait import equals
from tests import jobs


def clients(rabbit: RabbitEndpoint, etcd: EtcdEndpoint, namespace: str, count: int) -> list[Client]:
    return [Client(rabbit.amqp_url, etcd.endpoints, namespace) for _ in range(count)]


async def test_of_fifty_racing_enqueues_of_one_queue_key_exactly_one_wins(
    roger_client: Client,
    roger_partition: str,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
) -> None:
    await roger_client.start_partition(roger_partition, {"default": 1})
    racers = clients(roger_rabbitmq, roger_etcd, roger_namespace, 5)
    try:
        attempts = [
            racers[i % 5].enqueue(jobs.Unique.create({"ledger": "/dev/null", "key": "k"}), roger_partition)
            for i in range(50)
        ]
        results = await asyncio.gather(*attempts, return_exceptions=True)
    finally:
        await asyncio.gather(*(c.close() for c in racers))
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1
    assert all(isinstance(r, DuplicateJob) for r in results if not isinstance(r, str))
    stats = await (await roger_client.broker()).stats(queue_name(roger_partition, "default"))
    assert stats is not None and stats.ready == 1


async def test_a_queue_key_is_free_again_once_its_job_finished_or_was_cancelled(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await roger_client.start_partition(roger_partition, {"default": 1})
    first = jobs.Unique.create({"ledger": str(ledger), "key": "k"})
    await roger_client.enqueue(first, roger_partition)
    with pytest.raises(DuplicateJob):
        await roger_client.enqueue(jobs.Unique.create({"ledger": str(ledger), "key": "k"}), roger_partition)
    duplicate = rogerctl(node_factory, "job", "enqueue", roger_partition, "tests.jobs:Unique", '{"key": "k"}')
    assert duplicate.returncode == 3 and "already queued" in duplicate.stderr

    # A cancel frees the key at once, before any node dequeues the job.
    await roger_client.cancel(roger_partition, first.id)
    second = jobs.Unique.create({"ledger": str(ledger), "key": "k"})
    await roger_client.enqueue(second, roger_partition)

    await node_factory.start(jobs="tests.jobs")
    await eventually(lambda: ended(ledger)[second.id] == 1, timeout=15)
    assert ended(ledger)[first.id] == 0
    third = jobs.Unique.create({"ledger": str(ledger), "key": "k"})
    await eventually(lambda: _enqueued(roger_client, third, roger_partition), timeout=10)
    await eventually(lambda: ended(ledger)[third.id] == 1, timeout=15)


async def test_retry_buried_takes_the_queue_key_again_and_leaves_a_job_whose_key_is_held_buried(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    p = roger_partition
    await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(p, {"default": 1})
    failed = jobs.UniqueFails.create({"ledger": str(ledger), "key": "k"})
    await roger_client.enqueue(failed, p)

    async def buried_ids() -> list[str | None]:
        return [b.id for b in await roger_client.buried(p, "default")]

    await eventually(lambda: equals(buried_ids(), [failed.id]), timeout=15)
    await roger_client.stop_partition(p)  # nothing consumes: what is queued stays queued
    await eventually(lambda: consumers(roger_client, queue_name(p, "default"), 0), timeout=10)

    newer = jobs.Unique.create({"ledger": str(ledger), "key": "k"})
    await roger_client.enqueue(newer, p)  # burying freed the key
    held: list[tuple[str, str]] = []
    moved = await roger_client.retry_buried(p, "default", on_key_held=lambda j, k: held.append((j, k)))
    assert (moved, held, await buried_ids()) == (0, [(failed.id, "k")], [failed.id])
    cli = rogerctl(node_factory, "--json", "job", "retry-buried", p, "default")
    assert cli.returncode == 0, cli.stderr
    assert "stays buried" in cli.stderr and '"moved": 0' in cli.stdout

    await roger_client.purge_queue(p, "default")  # the newer job goes, and frees the key
    assert await roger_client.retry_buried(p, "default") == 1
    assert await buried_ids() == []
    with pytest.raises(DuplicateJob):  # the retried job holds its key again
        await roger_client.enqueue(jobs.Unique.create({"ledger": str(ledger), "key": "k"}), p)


async def _enqueued(client: Client, job: jobs.Unique, partition: str) -> bool:
    try:
        await client.enqueue(job, partition)
    except DuplicateJob:
        return False
    return True


async def test_jobs_of_one_execution_key_run_one_at_a_time_in_enqueue_order(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start_many(3, jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 10})
    serial = [
        jobs.Serial.create({"ledger": str(ledger), "key": "acct-1", "seq": i, "sleep": 0.05})
        for i in range(20)
    ]
    others = [jobs.Record.create({"ledger": str(ledger), "sleep": 0.05}) for _ in range(20)]
    for job in serial:
        await roger_client.enqueue(job, roger_partition)
    await roger_client.enqueue_many(others, roger_partition)

    await eventually(lambda: all(ended(ledger)[j.id] == 1 for j in serial + others), timeout=60)
    runs = [e for e in events(ledger) if e["id"] in {j.id for j in serial}]
    assert [e["event"] for e in runs] == ["start", "end"] * 20  # never two at once
    assert [e["seq"] for e in runs if e["event"] == "start"] == list(range(20))
    assert all(isinstance(e["token"], int) and e["token"] > 0 for e in runs)
    assert await roger_client.buried(roger_partition, "default") == []


async def test_the_rest_of_a_key_runs_after_its_holder_is_killed_mid_job(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    nodes = await node_factory.start_many(3, jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 10})
    serial = [
        jobs.Serial.create({"ledger": str(ledger), "key": "k", "seq": i, "sleep": 0.5}) for i in range(6)
    ]
    for job in serial:
        await roger_client.enqueue(job, roger_partition)
    first = (await eventually(lambda: events(ledger, "start"), timeout=15))[0]
    holder = next(n for n in nodes if n.name == first["node"])
    holder.kill()

    # Test nodes run with a lease TTL of 3 s: the key is free after it, the rest runs.
    await eventually(lambda: all(ended(ledger)[j.id] >= 1 for j in serial), timeout=3 + 15)
    starts = [e for e in events(ledger, "start")]
    assert {e["seq"] for e in starts} == set(range(6))
    after = [e for e in starts if e["node"] != holder.name]
    assert after and all(e["token"] > first["token"] for e in after)  # a new holder, a newer token


async def test_no_job_of_a_key_gets_stuck_under_racing_enqueues_and_releases(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    ledger: Path,
) -> None:
    await node_factory.start_many(3, jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 10})
    racers = clients(roger_rabbitmq, roger_etcd, roger_namespace, 4)
    batch = [jobs.Serial.create({"ledger": str(ledger), "key": f"k{i % 3}"}) for i in range(510)]
    try:
        # Short jobs enqueued one by one from 4 clients: the holder often finds the
        # queue empty just as a new job parks, the race Roger's design lost jobs to.
        async def feed(client: Client, part: list[jobs.Serial]) -> None:
            for job in part:
                await client.enqueue(job, roger_partition)

        await asyncio.gather(*(feed(racers[i], batch[i::4]) for i in range(4)))
    finally:
        await asyncio.gather(*(c.close() for c in racers))
    await eventually(lambda: all(ended(ledger)[j.id] >= 1 for j in batch), timeout=120, interval=0.5)
    for key in ("k0", "k1", "k2"):
        runs = [e for e in events(ledger) if e["id"] in {j.id for j in batch if j.args["key"] == key}]
        assert [e["event"] for e in runs] == ["start", "end"] * (len(runs) // 2)


async def test_a_purge_frees_the_queue_keys_of_the_purged_jobs(
    roger_client: Client, roger_partition: str
) -> None:
    await roger_client.start_partition(roger_partition, {"default": 1})
    held = [jobs.Unique.create({"ledger": "/dev/null", "key": f"k{i}"}) for i in range(3)]
    plain = jobs.Record.create({"ledger": "/dev/null"})
    await roger_client.enqueue_many([*held, plain], roger_partition)
    with pytest.raises(DuplicateJob):
        await roger_client.enqueue(jobs.Unique.create({"ledger": "/dev/null", "key": "k1"}), roger_partition)

    assert await roger_client.purge_queue(roger_partition, "default") == 4
    again = [jobs.Unique.create({"ledger": "/dev/null", "key": f"k{i}"}) for i in range(3)]
    await roger_client.enqueue_many(again, roger_partition)


async def test_a_holder_that_lost_its_lock_never_drops_the_new_holders_lock(
    roger_client: Client, roger_partition: str
) -> None:
    etcd = await roger_client.etcd()
    exec_keys = ExecKeys(etcd, roger_client.namespace)
    old_lease, new_lease = await etcd.grant(30), await etcd.grant(30)
    old = await exec_keys.acquire(roger_partition, "k", old_lease, b"old")
    assert old is not None
    await etcd.revoke(old_lease)  # its lease expired: the lock went with it
    new = await exec_keys.acquire(roger_partition, "k", new_lease, b"new")
    assert new is not None and new > old

    # The old holder, finding the queue empty, "releases": the new holder's lock stays.
    assert await exec_keys.release_if_idle(roger_partition, "k", old) is True
    assert await exec_keys.holds(roger_partition, "k", new)
    await exec_keys.release(roger_partition, "k", old)
    assert await exec_keys.holds(roger_partition, "k", new)
    assert await exec_keys.release_if_idle(roger_partition, "k", new) is True
    assert not await exec_keys.holds(roger_partition, "k", new)
    await etcd.revoke(new_lease)
