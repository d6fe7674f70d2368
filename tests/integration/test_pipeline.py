"""The job pipeline end to end: failing, burying and finishing jobs, and the queue keys they hold.

Regression tests: each one failed on code where the job path lost track of
a job (a TimeoutError a job raised itself, a queue key release while etcd is
down, a job RabbitMQ buried itself, a purge of buried jobs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from roger_cluster import Client, ClusterConnectionError, DuplicateJob, Job
from roger_cluster.broker import Moved, Peeked
from roger_cluster.management import Management
from roger_cluster.names import buried_queue_name, queue_name
from roger_cluster.testing import NodeFactory, NodeProcess, eventually
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.servers import EtcdEndpoint, EtcdServer, RabbitEndpoint
from tests import jobs


async def _accepted(client: Client, job: Job, partition: str) -> bool:
    """Whether `job` could be enqueued (False: its queue key is still held)."""
    try:
        await client.enqueue(job, partition)
    except DuplicateJob:
        return False
    return True


async def test_a_job_that_raises_timeout_error_itself_is_retried_then_buried_with_the_error(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    p = roger_partition
    await roger_client.start_partition(p, {"default": 1})
    await node_factory.start(jobs="tests.jobs")
    job = jobs.RaisesTimeout.create({"ledger": str(ledger)})
    await roger_client.enqueue(job, p)

    def retries() -> list[int]:
        return [e["retry"] for e in events(ledger, "start", job.id)]

    async def buried_or_run_too_often() -> bool:
        return len(retries()) > 3 or bool(await roger_client.buried(p, "default"))

    # Two retries 1 s apart, then the buried queue; a job run more often is looping.
    await eventually(buried_or_run_too_often, timeout=20, interval=0.2)
    assert retries() == [0, 1, 2], "the job was not retried as a failure (requeued instead?)"
    [buried] = await roger_client.buried(p, "default")
    assert (buried.id, buried.retry_count, buried.error_type) == (job.id, 2, "TimeoutError")
    assert "upstream timed out" in buried.reason

    after = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue(after, p)
    await eventually(lambda: ended(ledger)[after.id] == 1, timeout=15)
    assert retries() == [0, 1, 2]


async def test_unique_jobs_that_finish_while_etcd_is_down_run_exactly_once(
    private_etcd: EtcdServer,
    roger_rabbitmq_url: str,
    roger_namespace: str,
    roger_partition: str,
    roger_management: Management,
    tmp_path: Path,
    ledger: Path,
) -> None:
    p = roger_partition
    name = queue_name(p, "default")
    factory = NodeFactory(roger_rabbitmq_url, private_etcd.endpoint.endpoints, roger_namespace, tmp_path)
    keys = [f"k{i}" for i in range(5)]
    try:
        async with Client(roger_rabbitmq_url, private_etcd.endpoint.endpoints, roger_namespace) as client:
            await client.start_partition(p, {"default": 5})
            await factory.start(jobs="tests.jobs")
            batch = [jobs.Unique.create({"ledger": str(ledger), "key": k, "sleep": 3}) for k in keys]
            await client.enqueue_many(batch, p)
            await eventually(lambda: all(events(ledger, "start", j.id) for j in batch), timeout=15)
            private_etcd.stop()
            await eventually(lambda: all(ended(ledger)[j.id] for j in batch), timeout=15)

            def starts() -> list[int]:
                return [len(events(ledger, "start", j.id)) for j in batch]

            broker = await client.broker()
            quiet = 0

            async def settled_or_run_again() -> bool:
                """Nothing left in the queue for a few polls in a row, or a job ran again."""
                nonlocal quiet
                if max(starts()) > 1:
                    return True
                stats = await broker.stats(name)
                unacked = await roger_management.unacked(name)
                empty = stats is not None and stats.ready == 0 and unacked == 0
                quiet = quiet + 1 if empty else 0
                return quiet >= 4

            # Still with etcd down: the finished jobs must leave the queue for good,
            # not be given back to RabbitMQ to run again because their key cannot be freed.
            await eventually(settled_or_run_again, timeout=15, interval=0.5)
            assert starts() == [1] * 5, "jobs ran again while etcd was down"

            private_etcd.start()
            # Their queue keys are freed once etcd answers again.
            pending = {k: jobs.Unique.create({"ledger": "/dev/null", "key": k}) for k in keys}

            async def all_keys_free() -> bool:
                for key, job in list(pending.items()):
                    try:
                        if await _accepted(client, job, p):
                            del pending[key]
                    except ClusterConnectionError:
                        return False  # the client's etcd channel is still reconnecting
                return not pending

            await eventually(all_keys_free, timeout=15, interval=0.2, message="(queue keys still held)")
            assert [ended(ledger)[j.id] for j in batch] == [1] * 5
            assert starts() == [1] * 5
    finally:
        factory.cleanup()
        await roger_management.delete_queues(p + "-")


async def test_a_unique_job_buried_by_the_delivery_limit_frees_its_queue_key(
    node_factory: NodeFactory,
    roger_partition: str,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    ledger: Path,
) -> None:
    p = roger_partition
    limit = "2"
    client = Client(roger_rabbitmq.amqp_url, roger_etcd.endpoints, roger_namespace, delivery_limit=2)
    async with client:
        await client.start_partition(p, {"default": 1})
        poison = jobs.UniqueCrash.create({"ledger": str(ledger), "key": "k"})
        await client.enqueue(poison, p)

        def spawn() -> NodeProcess:
            return node_factory.spawn("victim", jobs="tests.jobs", ROGER_DELIVERY_LIMIT=limit)

        nodes = [spawn()]

        async def buried_or_exited() -> str | None:
            if await client.buried(p, "default"):
                return "buried"
            return "exited" if nodes[-1].returncode is not None else None

        # A supervisor would restart the node; so does this test, a bounded number of times.
        for _ in range(5):
            if await eventually(buried_or_exited, timeout=30, interval=0.2) == "buried":
                break
            assert nodes[-1].returncode == 3, nodes[-1].log()
            nodes.append(spawn())
        [buried] = await client.buried(p, "default")
        assert buried.id == poison.id
        assert 2 <= len(events(ledger, "start", poison.id)) <= 3

        # Buried is gone for good: its queue key is free for a new job.
        newer = jobs.Unique.create({"ledger": str(ledger), "key": "k"})
        await eventually(
            lambda: _accepted(client, newer, p), timeout=10, interval=0.2, message="(key 'k' still held)"
        )


async def test_purging_buried_jobs_frees_queue_keys_they_still_hold(
    roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    await roger_client.start_partition(p, {"default": 1})
    held = jobs.Unique.create({"ledger": "/dev/null", "key": "k"})
    await roger_client.enqueue(held, p)

    # What RabbitMQ's own dead-lettering (the delivery limit) does: the message goes
    # to the buried queue as it is, and nothing releases its queue key.
    async def to_buried(peeked: Peeked) -> Moved:
        assert peeked.properties["message_id"] == held.id
        return Moved(buried_queue_name(p, "default"), peeked.body, peeked.properties)

    broker = await roger_client.broker()
    assert await broker.move(queue_name(p, "default"), to_buried) == 1
    assert [b.id for b in await roger_client.buried(p, "default")] == [held.id]
    with pytest.raises(DuplicateJob):
        await roger_client.enqueue(jobs.Unique.create({"ledger": "/dev/null", "key": "k"}), p)

    assert await roger_client.purge_buried(p, "default") == 1
    assert await roger_client.buried(p, "default") == []
    newer = jobs.Unique.create({"ledger": "/dev/null", "key": "k"})
    assert await _accepted(roger_client, newer, p), "purging the buried job left its queue key held"
