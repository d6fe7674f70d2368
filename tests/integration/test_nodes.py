"""Membership: nodes register under their lease, leave on SIGTERM, drop out on SIGKILL."""

from __future__ import annotations

import json
import signal

from roger_cluster import Client
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.rogerctl import rogerctl


def listed(factory: NodeFactory) -> list[str]:
    done = rogerctl(factory, "--json", "nodes")
    assert done.returncode == 0, done.stderr
    return [n["name"] for n in json.loads(done.stdout)]


async def test_rogerctl_nodes_lists_nodes_and_a_killed_node_drops_out_within_the_ttl(
    node_factory: NodeFactory, roger_client: Client
) -> None:
    a, b, c = await node_factory.start_many(3)
    assert listed(node_factory) == [a.name, b.name, c.name]
    human = rogerctl(node_factory, "nodes")
    assert human.stdout.splitlines()[0].split()[:3] == ["NAME", "HOST", "PID"]
    assert str(b.pid) in human.stdout

    b.kill()
    # The test nodes run with a lease TTL of 3 s.
    await eventually(lambda: listed(node_factory) == [a.name, c.name], timeout=3 + 3)


async def test_a_second_node_with_a_live_nodes_name_is_refused(node_factory: NodeFactory) -> None:
    first = await node_factory.start("twin")
    second = node_factory.spawn("twin")
    assert await second.wait_exit(30) == 3
    assert "already taken by a live node" in second.log()
    assert first.returncode is None


async def test_sigterm_lets_the_running_job_finish_then_leaves_at_once(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, tmp_path: object
) -> None:
    from pathlib import Path

    from tests import jobs

    ledger = Path(str(tmp_path)) / "ledger"
    node = await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 2})
    job = jobs.Record.create({"ledger": str(ledger), "sleep": 1.5})
    await roger_client.enqueue(job, roger_partition)
    await eventually(lambda: ledger.exists() and job.id in ledger.read_text(), timeout=15)

    node.signal(signal.SIGTERM)
    assert await node.wait_exit(20) == 0
    events = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "end"]
    # The lease was revoked, not left to expire.
    assert [n.name for n in await roger_client.nodes()] == []
    [queue] = (await roger_client.partition(roger_partition)).queues
    assert queue.ready == 0


async def test_a_node_frozen_past_its_lease_drops_out_then_registers_again(
    node_factory: NodeFactory, roger_client: Client
) -> None:
    node = await node_factory.start()
    node.signal(signal.SIGSTOP)
    try:
        await eventually(lambda: listed(node_factory) == [], timeout=3 + 4)
    finally:
        node.signal(signal.SIGCONT)
    await eventually(lambda: listed(node_factory) == [node.name], timeout=10)
    assert "registering again" in node.log()
