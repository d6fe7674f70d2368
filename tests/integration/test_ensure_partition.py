"""An app's boot step and an operator's command: `ensure_partition` creates a
partition only if it is absent and leaves what an operator changed, while
`set_partition` (and `rogerctl partition start`) replaces it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from roger_cluster import Client
from roger_cluster.cluster.partitions import PartitionSpec
from roger_cluster.management import Management
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import events
from roger_cluster.testing.rogerctl import rogerctl
from tests import jobs


async def test_ensure_partition_leaves_an_operators_concurrency_and_drain_and_set_partition_replaces_them(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p = roger_partition
    booted = {"default": 2}
    assert await roger_client.ensure_partition(p, booted) == PartitionSpec(p, booted)
    assert await roger_management.queue(queue_name(p, "default")) is not None  # declared before the write

    # The operator raises the concurrency and adds a queue; the app restarts.
    assert rogerctl(node_factory, "partition", "start", p, "default=5", "other=1").returncode == 0
    operators = PartitionSpec(p, {"default": 5, "other": 1})
    assert await roger_client.ensure_partition(p, booted) == operators
    assert await roger_client.partition_spec(p) == operators
    deploy = rogerctl(node_factory, "partition", "start", p, "default=2", "--if-absent")
    assert deploy.returncode == 0, deploy.stderr
    assert deploy.stdout.startswith(f"partition {p} exists, left as it is: default=5, other=1")
    assert await roger_client.partition_spec(p) == operators

    # The operator starts a drain that is still waiting for a running job; the app restarts.
    await node_factory.start(jobs="tests.jobs")
    await roger_client.enqueue(jobs.Record.create({"ledger": str(ledger), "sleep": 3}), p)
    await eventually(lambda: len(events(ledger, "start")) == 1, timeout=15)
    drain = rogerctl(node_factory, "partition", "stop", p, "--drain", "--timeout", "0.5")
    assert drain.returncode == 1, drain.stderr
    assert (await roger_client.partition_spec(p)).draining
    in_force = await roger_client.ensure_partition(p, booted)
    assert in_force.draining and dict(in_force.queues) == {"default": 5, "other": 1}
    assert await roger_client.partition_spec(p) == in_force

    # set_partition is the operator's replace: concurrency back, drain ended.
    assert await roger_client.set_partition(p, booted) == PartitionSpec(p, booted)
    assert await roger_client.partition_spec(p) == PartitionSpec(p, booted)


async def test_apps_booting_at_once_agree_on_the_one_partition_written(
    roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    results = await asyncio.gather(*(roger_client.ensure_partition(p, {"default": n}) for n in range(1, 9)))
    assert all(r == results[0] for r in results)
    assert await roger_client.partition_spec(p) == results[0]
