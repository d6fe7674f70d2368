"""Cancellation of queued and running jobs, and graceful shutdown, on real nodes."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from roger_cluster import Client, Job
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.rogerctl import rogerctl
from tests import jobs


async def test_a_cancelled_queued_job_never_runs_and_on_cancel_fires_once(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start(jobs="tests.jobs", ROGER_CALLBACKS="tests.jobs:hooks")
    await roger_client.start_partition(roger_partition, {"default": 1})
    blocker = jobs.Record.create({"ledger": str(ledger), "sleep": 1.5})
    victim = jobs.Record.create({"ledger": str(ledger)})
    after = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue(blocker, roger_partition)
    await eventually(lambda: events(ledger, "start", blocker.id), timeout=15)
    await roger_client.enqueue_many([victim, after], roger_partition)
    await roger_client.cancel(roger_partition, victim.id)

    await eventually(lambda: ended(ledger)[after.id] == 1, timeout=15)
    assert [e["event"] for e in events(ledger, job_id=victim.id)] == ["on_cancel"]
    stats = await (await roger_client.broker()).stats(queue_name(roger_partition, "default"))
    assert stats is not None and stats.ready == 0


async def test_a_running_job_is_stopped_within_a_second_wherever_it_runs(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start_many(3, jobs="tests.jobs", ROGER_CALLBACKS="tests.jobs:hooks")
    await roger_client.start_partition(roger_partition, {"default": 2})
    job = jobs.Record.create({"ledger": str(ledger), "sleep": 60})
    await roger_client.enqueue(job, roger_partition)
    [start] = await eventually(lambda: events(ledger, "start", job.id), timeout=15)

    cancelled = rogerctl(node_factory, "job", "cancel", roger_partition, job.id)
    assert cancelled.returncode == 0, cancelled.stderr
    [stopped] = await eventually(lambda: events(ledger, "stopped", job.id), timeout=5)
    assert stopped["node"] == start["node"]
    await eventually(lambda: events(ledger, "on_cancel", job.id), timeout=5)

    async def acked() -> bool:
        stats = await (await roger_client.broker()).stats(queue_name(roger_partition, "default"))
        return stats is not None and stats.ready == 0

    await eventually(acked, timeout=5)
    assert len(events(ledger, "on_cancel", job.id)) == 1
    assert await roger_client.buried(roger_partition, "default") == []


async def test_cancel_reaches_a_running_job_within_one_second_of_the_request(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start_many(3, jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 2})
    job = jobs.Record.create({"ledger": str(ledger), "sleep": 60})
    await roger_client.enqueue(job, roger_partition)
    await eventually(lambda: events(ledger, "start", job.id), timeout=15)

    asked = time.time()
    await roger_client.cancel(roger_partition, job.id)
    [stopped] = await eventually(lambda: events(ledger, "stopped", job.id), timeout=5)
    assert stopped["t"] - asked < 1.0


async def test_a_running_sync_job_is_settled_at_once_when_cancelled_and_sees_cancelled(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start(jobs="tests.jobs", ROGER_CALLBACKS="tests.jobs:hooks")
    await roger_client.start_partition(roger_partition, {"default": 1})
    job = jobs.SyncPolls.create({"ledger": str(ledger), "sleep": 60})
    after = jobs.SyncRecord.create({"ledger": str(ledger)})
    await roger_client.enqueue_many([job, after], roger_partition)
    await eventually(lambda: events(ledger, "start", job.id), timeout=15)

    asked = time.time()
    await roger_client.cancel(roger_partition, job.id)
    [cancelled] = await eventually(lambda: events(ledger, "on_cancel", job.id), timeout=5)
    [stopped] = await eventually(lambda: events(ledger, "stopped", job.id), timeout=5)
    assert cancelled["t"] - asked < 1.0 and stopped["t"] - asked < 1.0
    await eventually(lambda: ended(ledger)[after.id] == 1, timeout=15)
    assert events(ledger, "start", after.id)[0]["t"] >= stopped["t"]  # one slot, never two jobs
    assert events(ledger, "end", job.id) == []
    assert await roger_client.buried(roger_partition, "default") == []


async def test_cancelling_an_unknown_job_is_not_an_error(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    done = rogerctl(node_factory, "job", "cancel", roger_partition, "no-such-job")
    assert done.returncode == 0, done.stderr
    bad = rogerctl(node_factory, "job", "cancel", roger_partition, "a/b")
    assert bad.returncode == 2 and "job id" in bad.stderr


async def test_sigterm_lets_five_running_jobs_finish_and_leaves_etcd_at_once(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    node = await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 5})
    batch = [jobs.Record.create({"ledger": str(ledger), "sleep": 2}) for _ in range(5)]
    await roger_client.enqueue_many(batch, roger_partition)
    await eventually(lambda: len(events(ledger, "start")) == 5, timeout=15)

    node.signal(signal.SIGTERM)
    assert await node.wait_exit(20) == 0
    assert set(ended(ledger)) == {j.id for j in batch}
    assert await roger_client.nodes() == []
    stats = await (await roger_client.broker()).stats(queue_name(roger_partition, "default"))
    assert stats is not None and stats.ready == 0


async def test_jobs_longer_than_the_shutdown_timeout_go_back_and_run_elsewhere(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    first = await node_factory.start(jobs="tests.jobs", ROGER_SHUTDOWN_TIMEOUT="1")
    await roger_client.start_partition(roger_partition, {"default": 3})
    batch: list[Job] = [jobs.Record.create({"ledger": str(ledger), "sleep": 3}) for _ in range(2)]
    # A sync job cannot be stopped: the node exits without waiting for its thread.
    batch.append(jobs.SyncRecord.create({"ledger": str(ledger), "sleep": 6}))
    await roger_client.enqueue_many(batch, roger_partition)
    await eventually(lambda: len(events(ledger, "start")) == 3, timeout=15)

    first.signal(signal.SIGTERM)
    assert await first.wait_exit(15) == 0
    assert not ended(ledger)
    second = await node_factory.start(jobs="tests.jobs")
    await eventually(lambda: set(ended(ledger)) == {j.id for j in batch}, timeout=25)
    reruns = [e for e in events(ledger, "start") if e["node"] == second.name]
    assert {e["id"] for e in reruns} == {j.id for j in batch}
    assert {e["retry"] for e in reruns} == {0}  # a requeue is not a retry


async def test_a_second_signal_stops_at_once_without_acking(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    node = await node_factory.start(jobs="tests.jobs", ROGER_SHUTDOWN_TIMEOUT="30")
    await roger_client.start_partition(roger_partition, {"default": 1})
    job = jobs.Record.create({"ledger": str(ledger), "sleep": 20})
    await roger_client.enqueue(job, roger_partition)
    await eventually(lambda: events(ledger, "start", job.id), timeout=15)

    node.signal(signal.SIGTERM)
    await eventually(lambda: "a second SIGTERM or SIGINT stops at once" in node.log(), timeout=5)
    node.signal(signal.SIGINT)
    assert await node.wait_exit(5) == 1
    stats = await (await roger_client.broker()).stats(queue_name(roger_partition, "default"))
    assert stats is not None and stats.ready == 1
