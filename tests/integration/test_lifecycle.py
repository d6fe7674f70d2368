"""The job lifecycle on real nodes: retries, buried jobs, time limits, callbacks."""

from __future__ import annotations

import json
from pathlib import Path

from roger_cluster import Client
from roger_cluster.management import Management
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.consumers import consumers
from roger_cluster.testing.ledger import events
from roger_cluster.testing.rogerctl import rogerctl
from roger_cluster.testing.wait import equals
from tests import jobs

SHORT_LEVELS = "1,2"


async def queue_counts(management: Management, partition: str) -> dict[str, int]:
    """Messages (ready + unacked) per queue of the partition, by suffix after the partition."""
    return {
        q.name[len(partition) + 1 :]: q.messages
        for q in await management.queues()
        if q.name.startswith(partition + "-")
    }


async def test_a_retryable_job_that_fails_twice_runs_three_times_with_the_level_delays(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    await node_factory.start(jobs="tests.jobs", ROGER_RETRY_LEVELS=SHORT_LEVELS)
    await roger_client.start_partition(roger_partition, {"default": 2})
    job = jobs.Flaky.create({"ledger": str(ledger), "failures": 2})
    await roger_client.enqueue(job, roger_partition)

    await eventually(lambda: events(ledger, "end"), timeout=20)
    starts = events(ledger, "start")
    assert [s["retry"] for s in starts] == [0, 1, 2]
    gaps = [b["t"] - a["t"] for a, b in zip(starts, starts[1:], strict=False)]
    assert 1.0 <= gaps[0] < 1.0 + 1.5, gaps
    assert 2.0 <= gaps[1] < 2.0 + 1.5, gaps

    async def all_empty() -> bool:
        # The retries waited in the namespace's delay levels: no queue of the partition's own.
        counts = await queue_counts(roger_management, roger_partition)
        assert counts == {"default": 0, "default.buried": 0}, counts
        return True

    await eventually(all_empty, timeout=10)


async def test_a_job_that_always_fails_is_buried_with_its_error_then_can_be_retried(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    await node_factory.start(jobs="tests.jobs", ROGER_RETRY_LEVELS="1")
    await roger_client.start_partition(roger_partition, {"default": 2})
    job = jobs.AlwaysFails.create({"ledger": str(ledger)})
    await roger_client.enqueue(job, roger_partition)

    async def buried() -> bool:
        assert await queue_counts(roger_management, roger_partition) == {"default": 0, "default.buried": 1}
        return True

    await eventually(buried, timeout=20)
    assert [s["retry"] for s in events(ledger, "start")] == [0, 1]

    listed = rogerctl(node_factory, "--json", "job", "buried", roger_partition, "default")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["id"] == job.id and entry["job"] == "tests.jobs:AlwaysFails"
    assert entry["error_type"] == "ValueError" and entry["reason"] == "ValueError: always fails"
    assert "raise ValueError" in entry["traceback"] and entry["node"] == "node1"
    # Listing took nothing away.
    assert [b.id for b in await roger_client.buried(roger_partition, "default")] == [job.id]

    retried = rogerctl(node_factory, "job", "retry-buried", roger_partition, "default", job.id)
    assert retried.returncode == 0 and "1 buried job(s) back" in retried.stdout
    await eventually(lambda: len(events(ledger, "start")) == 4, timeout=20)
    await eventually(buried, timeout=20)
    assert [s["retry"] for s in events(ledger, "start")] == [0, 1, 0, 1]

    kept = rogerctl(node_factory, "job", "delete-buried", roger_partition, "default", "not-this-one")
    assert kept.returncode == 0 and "0 buried job(s) deleted" in kept.stdout
    purged = rogerctl(node_factory, "job", "purge-buried", roger_partition, "default")
    assert purged.returncode == 0 and "1 buried job(s) deleted" in purged.stdout
    assert await roger_client.buried(roger_partition, "default") == []


async def test_retry_buried_without_ids_moves_them_all_and_leaves_unnamed_ones(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 5})
    failing = [jobs.Fails.create({"ledger": str(ledger)}) for _ in range(3)]
    await roger_client.enqueue_many(failing, roger_partition)

    async def buried_ids() -> set[str | None]:
        return {b.id for b in await roger_client.buried(roger_partition, "default")}

    await eventually(lambda: equals(buried_ids(), {j.id for j in failing}), timeout=20)
    await roger_client.stop_partition(roger_partition)  # nothing consumes while we move
    broker = await roger_client.broker()
    await eventually(lambda: consumers(roger_client, queue_name(roger_partition, "default"), 0), timeout=10)
    assert await roger_client.retry_buried(roger_partition, "default", [failing[0].id]) == 1
    assert await buried_ids() == {failing[1].id, failing[2].id}
    assert await roger_client.retry_buried(roger_partition, "default") == 2
    assert await buried_ids() == set()
    stats = await broker.stats(queue_name(roger_partition, "default"))
    assert stats is not None and stats.ready == 3


async def test_an_async_job_past_its_limit_fails_within_the_limit_plus_a_second(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 1})
    job = jobs.SlowAsync.create({"ledger": str(ledger), "sleep": 30})
    await roger_client.enqueue(job, roger_partition)

    await eventually(lambda: events(ledger, "stopped"), timeout=15)
    [start], [stopped] = events(ledger, "start"), events(ledger, "stopped")
    assert 1.0 <= stopped["t"] - start["t"] < 2.0
    [entry] = await eventually(lambda: roger_client.buried(roger_partition, "default"), timeout=10)
    assert entry.error_type == "JobTimeout"


async def test_a_sync_job_past_its_limit_fails_at_once_and_keeps_its_slot_until_it_returns(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 1})
    slow = jobs.SlowSync.create({"ledger": str(ledger), "sleep": 30})
    follower = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue_many([slow, follower], roger_partition)

    await eventually(lambda: events(ledger, "end", follower.id), timeout=15)
    [start] = events(ledger, "start", slow.id)
    [stopped] = events(ledger, "stopped", slow.id)  # it saw `self.cancelled` and returned
    [follower_start] = events(ledger, "start", follower.id)
    assert 1.0 <= stopped["t"] - start["t"] < 2.0
    assert follower_start["t"] >= stopped["t"]  # concurrency 1 held while the thread ran
    [entry] = await roger_client.buried(roger_partition, "default")
    assert entry.id == slow.id and entry.error_type == "JobTimeout"


async def test_every_callback_fires_with_its_arguments_and_a_raising_one_changes_nothing(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start(jobs="tests.jobs", ROGER_CALLBACKS="tests.jobs:hooks", ROGER_RETRY_LEVELS="1")
    await roger_client.start_partition(roger_partition, {"default": 3})
    ok = jobs.Record.create({"ledger": str(ledger)})
    bad = jobs.AlwaysFails.create({"ledger": str(ledger)})
    await roger_client.enqueue_many([ok, bad], roger_partition)

    await eventually(lambda: events(ledger, "on_buried", bad.id), timeout=20)
    assert [e["event"] for e in events(ledger, job_id=ok.id)] == ["before_run", "start", "end", "after_run"]
    assert events(ledger, "after_run", ok.id)[0]["result"] == f"done {ok.id}"
    assert [(e["event"], e.get("error")) for e in events(ledger, job_id=bad.id)] == [
        ("before_run", None),
        ("start", None),
        ("on_error", "ValueError"),
        ("before_run", None),
        ("start", None),
        ("on_error", "ValueError"),
        ("on_buried", "ValueError"),
    ]
    # The raising after_run did not make the good job fail, retry or stay queued.
    [queue] = (await roger_client.partition(roger_partition)).queues
    assert queue.ready == 0
    assert [b.id for b in await roger_client.buried(roger_partition, "default")] == [bad.id]
    assert "callback after_run failed" in node_factory.nodes[0].log()
