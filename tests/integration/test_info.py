"""Cluster info: running jobs asked from every node, queued jobs peeked, partition show.

`job running` asks each node in etcd over its control queue; a node that
does not answer in time is reported, never silently left out. `job queued`
peeks without losing or consuming anything.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from roger_cluster import Client, RogerError
from roger_cluster.cluster import keys
from roger_cluster.management import Management
from roger_cluster.names import control_queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.rogerctl import rogerctl
from roger_cluster.testing.servers import RabbitServer
from tests import jobs


def started(ledger: Path) -> dict[str, str]:
    """Job id -> the node it started on."""
    return {e["id"]: e["node"] for e in events(ledger, "start")}


async def test_job_running_shows_each_running_job_once_with_its_node(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    nodes = await node_factory.start_many(3, jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 2})
    batch = [jobs.Record.create({"ledger": str(ledger), "sleep": 60}) for _ in range(5)]
    await roger_client.enqueue_many(batch, roger_partition)
    await eventually(lambda: len(started(ledger)) == 5, timeout=15)
    where = started(ledger)
    assert len(set(where.values())) >= 2, where  # spread over the nodes, so all are asked

    done = rogerctl(node_factory, "--json", "job", "running", roger_partition)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["unreachable"] == []
    assert report["nodes"] == sorted(n.name for n in nodes)
    ids = [j["id"] for j in report["jobs"]]
    assert sorted(ids) == sorted(where)  # each running job once
    for job in report["jobs"]:
        assert job["node"] == where[job["id"]]
        assert (job["partition"], job["queue"], job["job"]) == (
            roger_partition,
            "default",
            jobs.Record.path(),
        )
        assert job["elapsed"] > 0
        assert abs(job["started_at"] - time.time() + job["elapsed"]) < 5

    human = rogerctl(node_factory, "job", "running").stdout.splitlines()
    assert human[0].split() == ["ID", "CLASS", "PARTITION", "QUEUE", "NODE", "STARTED", "ELAPSED"]
    assert sorted(line.split()[0] for line in human[1:]) == sorted(where)

    # Another partition's filter shows none of them, but still asks every node.
    other = await roger_client.running("nosuchpartition")
    assert other.jobs == [] and other.unreachable == [] and len(other.nodes) == 3


async def test_a_stopped_node_is_reported_unreachable_within_the_timeout(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    # A lease longer than the test, so the frozen node stays in etcd and must be asked.
    a, b, c = await node_factory.start_many(3, jobs="tests.jobs", ROGER_LEASE_TTL="60")
    await roger_client.start_partition(roger_partition, {"default": 1})
    batch = [jobs.Record.create({"ledger": str(ledger), "sleep": 60}) for _ in range(3)]
    await roger_client.enqueue_many(batch, roger_partition)
    await eventually(lambda: len(started(ledger)) == 3, timeout=15)
    where = started(ledger)

    b.signal(signal.SIGSTOP)
    try:
        began = time.monotonic()
        report = await roger_client.running(timeout=1.0)
        took = time.monotonic() - began
        assert took < 1.0 + 0.5, took
        assert [u.node for u in report.unreachable] == [b.name]
        assert "no answer within 1s" in report.unreachable[0].reason
        assert sorted(j.id for j in report.jobs) == sorted(i for i, n in where.items() if n != b.name)

        done = rogerctl(node_factory, "job", "running", "--timeout", "1")
        assert done.returncode == 0, done.stderr
        assert f"node {b.name} is unreachable: no answer within 1s" in done.stderr
        assert b.name not in done.stdout
    finally:
        b.signal(signal.SIGCONT)

    async def answers_again() -> bool:
        report = await roger_client.running(timeout=1.0)
        return report.unreachable == [] and len(report.jobs) == 3

    await eventually(answers_again, timeout=10)


async def test_a_node_without_a_control_queue_is_reported_not_left_out(
    node_factory: NodeFactory, roger_client: Client, roger_namespace: str
) -> None:
    node = await node_factory.start()
    etcd = await roger_client.etcd()
    await etcd.put(keys.node(roger_namespace, "ghost"), b"{}")
    report = await roger_client.running(timeout=1.0)
    assert [(u.node, "no control queue" in u.reason) for u in report.unreachable] == [("ghost", True)]
    assert report.nodes == sorted([node.name, "ghost"])


async def test_job_queued_lists_queued_jobs_in_order_and_leaves_them_all_there(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    began = time.monotonic()
    nobody = await roger_client.running(timeout=5.0)
    assert (nobody.nodes, nobody.jobs, nobody.unreachable) == ([], [], [])
    assert time.monotonic() - began < 1.0  # no node to wait for

    await roger_client.start_partition(roger_partition, {"default": 2})
    ids = []
    for i in range(6):  # one by one: enqueue order is queue order
        ids.append(
            await roger_client.enqueue(jobs.Record.create({"ledger": str(ledger), "n": i}), roger_partition)
        )

    done = rogerctl(node_factory, "--json", "job", "queued", roger_partition, "default")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [j["id"] for j in listed] == ids
    assert [j["args"]["n"] for j in listed] == list(range(6))
    assert {j["job"] for j in listed} == {jobs.Record.path()}

    # Peeking the whole queue keeps its order; all jobs are still there.
    again = await roger_client.queued(roger_partition, "default")
    assert [j.id for j in again] == ids

    limited = rogerctl(node_factory, "job", "queued", roger_partition, "default", "--limit", "2")
    assert limited.returncode == 0, limited.stderr
    lines = limited.stdout.splitlines()
    assert lines[0].split()[:3] == ["#", "ID", "CLASS"]
    assert [line.split()[1] for line in lines[1:]] == ids[:2]

    # A partial peek may reorder (a quorum queue requeues at its end), never loses.
    after = await roger_client.queued(roger_partition, "default")
    assert sorted(str(j.id) for j in after) == sorted(ids)
    [queue] = (await roger_client.partition(roger_partition)).queues
    assert queue.ready == 6
    await node_factory.start(jobs="tests.jobs")
    await eventually(lambda: len(ended(ledger)) == 6, timeout=15)
    assert set(ended(ledger)) == set(ids)
    assert set(ended(ledger).values()) == {1}

    missing = rogerctl(node_factory, "job", "queued", roger_partition, "nosuchqueue")
    assert missing.returncode == 4, missing.stderr
    assert "has no queue 'nosuchqueue'" in missing.stderr
    help_text = rogerctl(node_factory, "job", "queued", "--help").stdout
    assert "redelivered" in " ".join(help_text.split())


async def test_partition_show_has_paused_buried_and_per_node_consumers(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    a, b = await node_factory.start_many(2, jobs="tests.jobs")
    p = roger_partition
    await roger_client.start_partition(p, {"default": 3, "other": 1})
    await roger_client.enqueue(jobs.Fails.create({"ledger": str(ledger)}), p)

    async def shown() -> dict[str, dict[str, object]]:
        done = rogerctl(node_factory, "--json", "partition", "show", p)
        assert done.returncode == 0, done.stderr
        return {q["name"]: q for q in json.loads(done.stdout)}

    async def consumed_by_both() -> bool:
        by_queue = await shown()
        assert by_queue["default"]["consumer_nodes"] == [
            {"node": a.name, "prefetch": 3},
            {"node": b.name, "prefetch": 3},
        ]
        assert by_queue["default"]["buried"] == 1
        assert by_queue["default"]["paused"] is False
        return True

    await eventually(consumed_by_both, timeout=20)

    await roger_client.pause_queue(p, "other")

    async def other_paused() -> bool:
        by_queue = await shown()
        assert by_queue["other"]["paused"] is True
        assert by_queue["other"]["consumer_nodes"] == []
        assert by_queue["default"]["paused"] is False
        return True

    await eventually(other_paused, timeout=20)

    human = rogerctl(node_factory, "partition", "show", p).stdout.splitlines()
    assert human[0].split() == [
        "QUEUE",
        "RABBITMQ",
        "QUEUE",
        "CONCURRENCY",
        "PAUSED",
        "READY",
        "UNACKED",
        "BURIED",
        "CONSUMERS",
        "NODES",
    ]
    rows = {line.split()[0]: line.split() for line in human[1:]}
    assert rows["default"][2:4] == ["3", "no"]
    assert rows["default"][6] == "1"
    assert rows["default"][8] == f"{a.name},{b.name}"
    assert rows["other"][3] == "yes"
    assert rows["other"][8:] == ["paused", f"({a.name},{b.name}", "on", "resume)"]


async def test_a_node_answers_again_after_a_rabbitmq_restart(
    private_rabbitmq: RabbitServer,
    roger_etcd_endpoints: str,
    roger_namespace: str,
    roger_partition: str,
    tmp_path: Path,
) -> None:
    amqp_url = private_rabbitmq.endpoint.amqp_url
    management = Management(private_rabbitmq.endpoint.management_url)
    factory = NodeFactory(amqp_url, roger_etcd_endpoints, roger_namespace, tmp_path)
    try:
        async with Client(amqp_url, roger_etcd_endpoints, roger_namespace) as client:
            node = await factory.start()
            assert (await client.running(timeout=2.0)).unreachable == []

            private_rabbitmq.stop()
            private_rabbitmq.start()

            async def answers() -> bool:
                try:
                    report = await client.running(timeout=1.0)
                except RogerError:  # RabbitMQ still starting
                    return False
                assert report.unreachable == [], report.unreachable
                return True

            await eventually(answers, timeout=30, interval=0.5)
            queue = await management.queue(control_queue_name(roger_namespace, node.name))
            assert queue is not None and queue.exclusive and not queue.durable
    finally:
        factory.cleanup()
        await management.close()


async def test_overview_reads_every_partition_in_a_few_requests_and_agrees_with_partition_show(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    """The dashboard's bulk read (management API, one request per kind) says what the
    per-partition read says, once the console's statistics caught up."""
    node = await node_factory.start(jobs="tests.jobs")
    busy, idle = f"{roger_partition}a", f"{roger_partition}b"
    await roger_client.start_partition(busy, {"default": 1, "other": 2})
    await roger_client.start_partition(idle, {"default": 1})
    await roger_client.pause_queue(busy, "default")

    async def paused() -> bool:
        default, other = (await roger_client.partition(busy)).queues
        return default.consumers == 0 and other.consumers == 1

    await eventually(paused, timeout=15, message="(the node applies the pause)")
    await roger_client.enqueue_many([jobs.Record.create({"ledger": "/dev/null"}) for _ in range(3)], busy)

    async def agree() -> bool:
        bulk = await roger_client.overview()
        one_by_one = [await roger_client.partition(name) for name in (busy, idle)]
        return sorted(bulk, key=lambda p: p.name) == one_by_one

    await eventually(agree, timeout=20, message="(overview vs partition)")
    [shown] = [p for p in await roger_client.overview() if p.name == busy]
    default, other = shown.queues
    assert (default.paused, default.ready, default.consumers) == (True, 3, 0)
    assert (other.paused, other.consumers) == (False, 1)
    assert [c.node for c in other.consumer_nodes or []] == [node.name]
