"""The job pipeline tried as an adversary would: jobs that misbehave, engines that go away.

Each test is a way to break a promise of docs/reliability.md, against real
servers and real roger-node processes; the promise must hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from roger_cluster import Client, Job, RogerError
from roger_cluster.management import Management
from roger_cluster.names import queue_name, release_queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.consumers import consumers
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.servers import EtcdServer
from tests import jobs


@pytest.mark.parametrize("job_class", [jobs.IgnoresCancel, jobs.SyncIgnoresCancel])
async def test_a_job_that_ignores_cancellation_is_settled_at_its_limit_and_keeps_its_slot(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    ledger: Path,
    job_class: type[Job],
) -> None:
    p = roger_partition
    await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(p, {"default": 1})
    stubborn = job_class.create({"ledger": str(ledger), "hold": 5})
    after = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue_many([stubborn, after], p)

    # Buried (a time limit reached is a failure) while the job still runs...
    [buried] = await eventually(lambda: roger_client.buried(p, "default"), timeout=15)
    assert buried.id == stubborn.id and buried.error_type == "JobTimeout"
    assert ended(ledger)[stubborn.id] == 0
    # ...and the next job waits for its slot: concurrency 1 is never exceeded.
    await eventually(lambda: ended(ledger)[after.id] == 1, timeout=15)
    [end] = events(ledger, "end", stubborn.id)
    [start] = events(ledger, "start", after.id)
    assert start["t"] >= end["t"]


@pytest.mark.parametrize("job_class", [jobs.RaisesBase, jobs.RaisesBaseLimited, jobs.SyncRaisesBase])
async def test_base_exceptions_from_perform_are_failures_and_the_node_lives_on(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    ledger: Path,
    job_class: type[Job],
) -> None:
    p = roger_partition
    node = await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(p, {"default": 2})
    errors = ["KeyboardInterrupt", "SystemExit", "GeneratorExit"]
    raising = [job_class.create({"ledger": str(ledger), "error": e}) for e in errors]
    await roger_client.enqueue_many(raising, p)

    async def buried() -> dict[str | None, str | None]:
        found = {b.id: b.error_type for b in await roger_client.buried(p, "default")}
        return found if len(found) == len(raising) else {}

    assert await eventually(buried, timeout=20) == {j.id: e for j, e in zip(raising, errors, strict=True)}
    after = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue(after, p)
    await eventually(lambda: ended(ledger)[after.id] == 1, timeout=15)
    assert node.returncode is None
    assert all(len(events(ledger, "start", j.id)) == 1 for j in raising)


async def test_a_partition_stopped_while_its_jobs_retry_runs_them_once_started_again(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    p = roger_partition
    await node_factory.start_many(2, jobs="tests.jobs")
    await roger_client.start_partition(p, {"default": 5})
    flaky = [jobs.Flaky.create({"ledger": str(ledger), "failures": 1}) for _ in range(10)]
    await roger_client.enqueue_many(flaky, p)
    await eventually(lambda: all(events(ledger, "start", j.id) for j in flaky), timeout=15)
    await roger_client.stop_partition(p)  # while the jobs wait in the delay levels
    await eventually(lambda: consumers(roger_client, queue_name(p, "default"), 0), timeout=15)

    async def back_in_their_queue() -> bool:  # moved back by the nodes once due, nobody consumes
        stats = await (await roger_client.broker()).stats(queue_name(p, "default"))
        return stats is not None and stats.ready == len(flaky)

    await eventually(back_in_their_queue, timeout=20)
    assert sum(ended(ledger).values()) == 0
    await roger_client.start_partition(p, {"default": 5})
    await eventually(lambda: all(ended(ledger)[j.id] == 1 for j in flaky), timeout=20)
    assert all(len(events(ledger, "start", j.id)) == 2 for j in flaky)
    assert await roger_client.buried(p, "default") == []


ETCD_DOWN = 60.0  # seconds etcd stays unreachable


@pytest.mark.timeout(360)
async def test_etcd_unreachable_for_a_minute_runs_plain_and_unique_jobs_once_and_keyed_jobs_apart(
    private_etcd: EtcdServer,
    roger_rabbitmq_url: str,
    roger_namespace: str,
    roger_partition: str,
    tmp_path: Path,
    ledger: Path,
) -> None:
    p = roger_partition
    etcd = private_etcd.endpoint.endpoints
    factory = NodeFactory(roger_rabbitmq_url, etcd, roger_namespace, tmp_path)
    clients = [Client(roger_rabbitmq_url, etcd, roger_namespace) for _ in range(3)]
    sent: dict[str, list[Job]] = {"plain": [], "unique": [], "keyed": []}
    try:
        await factory.start_many(2, jobs="tests.jobs")
        await clients[0].start_partition(p, {"default": 10})

        def make(kind: str, n: int) -> Job:
            args: dict[str, Any] = {"ledger": str(ledger), "sleep": 0.05}
            if kind == "plain":
                return jobs.Record.create(args)
            if kind == "unique":
                return jobs.Unique.create({**args, "key": f"u{n}"})
            return jobs.Serial.create({**args, "key": f"k{n % 3}", "seq": n})

        async def feed(client: Client, kind: str, offset: int) -> None:
            """An application that enqueues a job every 0.2 s and retries one that failed."""
            loop = asyncio.get_running_loop()
            deadline = loop.time() + ETCD_DOWN + 120
            for n in range(offset, offset + 40):
                job = make(kind, n)
                while True:
                    assert loop.time() < deadline, f"{kind} job {n} never enqueued"
                    try:
                        await client.enqueue(job, p)
                        break
                    except RogerError:
                        await asyncio.sleep(0.5)  # the same job again: same id
                sent[kind].append(job)
                await asyncio.sleep(0.2)

        feeders = [
            asyncio.create_task(feed(client, kind, 100 * i))
            for i, client in enumerate(clients)
            for kind in ("plain", "unique", "keyed")
        ]
        await eventually(lambda: sum(ended(ledger).values()) >= 30, timeout=20)
        private_etcd.stop()
        try:
            await asyncio.sleep(ETCD_DOWN)  # the fault's length is the point: nothing to wait for
        finally:
            private_etcd.start()
        await asyncio.wait_for(asyncio.gather(*feeders), ETCD_DOWN + 150)

        everything = [job for kind in sent.values() for job in kind]
        await eventually(lambda: all(ended(ledger)[j.id] >= 1 for j in everything), timeout=90, interval=0.5)
        counts = ended(ledger)
        assert {j.id: counts[j.id] for j in sent["plain"] + sent["unique"]} == {
            j.id: 1 for j in sent["plain"] + sent["unique"]
        }
        for key in ("k0", "k1", "k2"):
            ids = {j.id for j in sent["keyed"] if j.args["key"] == key}
            assert _never_overlap(
                [e for e in events(ledger) if e["id"] in ids and e["event"] in ("start", "end")]
            )
        # Every queue key was freed once etcd answered again.
        for job in sent["unique"]:
            await eventually(
                _enqueues(clients[0], jobs.Unique.create({**job.args, "sleep": 0}), p), timeout=30
            )
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        factory.cleanup()


def _never_overlap(runs: list[dict[str, Any]]) -> bool:
    """Whether no job started while another one of the same list was running."""
    running: set[str] = set()
    for event in runs:
        if event["event"] == "start":
            assert not running, f"{event['id']} started while {running} ran"
            running.add(event["id"])
        else:
            running.discard(event["id"])
    return True


def _enqueues(client: Client, job: Job, partition: str) -> Callable[[], Awaitable[bool]]:
    """A check that enqueues `job` and says whether that worked."""

    async def check() -> bool:
        try:
            await client.enqueue(job, partition)
        except RogerError:
            return False
        return True

    return check


async def test_a_node_killed_while_etcd_is_down_leaves_no_queue_key_held(
    private_etcd: EtcdServer,
    roger_rabbitmq_url: str,
    roger_namespace: str,
    roger_partition: str,
    roger_management: Management,
    tmp_path: Path,
    ledger: Path,
) -> None:
    p = roger_partition
    etcd = private_etcd.endpoint.endpoints
    factory = NodeFactory(roger_rabbitmq_url, etcd, roger_namespace, tmp_path)
    try:
        async with Client(roger_rabbitmq_url, etcd, roger_namespace) as client:
            await client.start_partition(p, {"default": 5})
            victim = await factory.start(jobs="tests.jobs")
            unique = [
                jobs.Unique.create({"ledger": str(ledger), "key": f"k{i}", "sleep": 1.5}) for i in range(3)
            ]
            await client.enqueue_many(unique, p)
            await eventually(lambda: all(events(ledger, "start", j.id) for j in unique), timeout=15)
            private_etcd.stop()
            await eventually(lambda: all(ended(ledger)[j.id] == 1 for j in unique), timeout=15)

            async def handed_over() -> bool:  # the releases wait in RabbitMQ, not in the node's memory
                stats = await (await client.broker()).stats(release_queue_name(roger_namespace))
                return (
                    stats is not None
                    and stats.ready + (await _unacked(roger_management, roger_namespace)) == 3
                )

            await eventually(handed_over, timeout=15)
            victim.kill()
            private_etcd.start()
            await factory.start(jobs="tests.jobs")
            for job in unique:
                again = jobs.Unique.create({**job.args, "sleep": 0})
                await eventually(_enqueues(client, again, p), timeout=30)
            assert all(ended(ledger)[j.id] == 1 for j in unique)
    finally:
        factory.cleanup()
        await roger_management.delete_queues(p + "-")
        await roger_management.delete_queues(release_queue_name(roger_namespace))


async def _unacked(management: Management, namespace: str) -> int:
    return await management.unacked(release_queue_name(namespace)) or 0
