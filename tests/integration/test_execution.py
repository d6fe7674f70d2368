"""Execution: every job runs, once, within the queue's concurrency, even across a crash."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgpack

from roger_cluster import Client, Job
from roger_cluster.codec import JobMessage
from roger_cluster.management import Management
from roger_cluster.names import buried_queue_name, queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended, events
from tests import jobs


async def test_a_thousand_jobs_over_three_nodes_all_run_exactly_once(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    nodes = await node_factory.start_many(3, jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 10})
    batch: list[Job] = [jobs.Record.create({"ledger": str(ledger)}) for _ in range(500)]
    batch += [jobs.SyncRecord.create({"ledger": str(ledger)}) for _ in range(500)]
    ids = await roger_client.enqueue_many(batch, roger_partition)

    await eventually(lambda: len(ended(ledger)) >= 1000, timeout=60)
    counts = ended(ledger)
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}
    by_node = Counter(e["node"] for e in events(ledger) if e["event"] == "end")
    assert set(by_node) <= {n.name for n in nodes}
    assert len(by_node) >= 2, by_node


async def test_no_more_than_concurrency_jobs_run_at_once_on_a_node(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 2})
    await roger_client.enqueue_many(
        [jobs.Record.create({"ledger": str(ledger), "sleep": 0.05}) for _ in range(30)], roger_partition
    )
    await eventually(lambda: len(ended(ledger)) == 30, timeout=30)

    running, peak = 0, 0
    for event in sorted(events(ledger), key=lambda e: (e["t"], e["event"] == "start")):
        running += 1 if event["event"] == "start" else -1
        peak = max(peak, running)
    assert peak == 2


async def test_a_job_running_on_a_killed_node_runs_again_on_another(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    nodes = await node_factory.start_many(2, jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 1})
    job = jobs.Record.create({"ledger": str(ledger), "sleep": 2})
    await roger_client.enqueue(job, roger_partition)

    first = (await eventually(lambda: events(ledger), timeout=15))[0]
    victim = next(n for n in nodes if n.name == first["node"])
    victim.kill()

    await eventually(lambda: ended(ledger)[job.id] == 1, timeout=30)
    starts = [e["node"] for e in events(ledger) if e["event"] == "start"]
    assert starts[0] == victim.name
    assert starts[-1] != victim.name


async def test_a_message_naming_a_class_that_is_not_allowed_is_buried_not_run(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 2})
    for name in ["tests.jobs:NotAJob", "os:system", "roger_cluster.demo:Sleep"]:
        await roger_client.enqueue_message(JobMessage("id-" + name, name, "true", "default"), roger_partition)
    broker = await roger_client.broker()
    await broker.publish_bytes(b"\xc1 not msgpack", queue_name(roger_partition, "default"), {})
    await broker.publish_bytes(msgpack.packb({"v": 1}), queue_name(roger_partition, "default"), {})

    async def buried() -> bool:
        info = await roger_management.queue(buried_queue_name(roger_partition, "default"))
        main = await roger_management.queue(queue_name(roger_partition, "default"))
        return info is not None and main is not None and info.messages == 5 and main.messages == 0

    await eventually(buried, timeout=20)
    reasons = sorted(b.reason for b in await roger_client.buried(roger_partition, "default"))
    assert len(reasons) == 5 and all(reasons), reasons
    assert sum("is not allowed on this node" in r for r in reasons) == 3
    assert sum("not valid msgpack" in r for r in reasons) == 1
    assert sum("unsupported message format version" in r or "missing" in r for r in reasons) == 1
    # The node goes on serving good jobs.
    good = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue(good, roger_partition)
    await eventually(lambda: ended(ledger)[good.id] == 1, timeout=10)
