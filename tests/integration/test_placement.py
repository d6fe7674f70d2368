"""Per-node placement: partitions limited to named or labelled nodes, and a node's
own concurrency for a queue, as the RabbitMQ console shows them.

Each node names its AMQP connection after itself, so the management API tells
which node holds each consumer.
"""

from __future__ import annotations

import json
from pathlib import Path

from roger_cluster import Client
from roger_cluster.management import Management
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.consumers import wait_consumers
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.rogerctl import rogerctl
from tests import jobs


async def test_a_partition_limited_to_one_of_three_nodes_has_one_consumer_per_queue_on_that_node(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p = roger_partition
    first, chosen, third = await node_factory.start_many(3, jobs="tests.jobs")
    done = rogerctl(node_factory, "partition", "start", p, "default=3", "other=2", "--nodes", chosen.name)
    assert done.returncode == 0, done.stderr
    assert f"on nodes={chosen.name}" in done.stdout
    await wait_consumers(roger_management, queue_name(p, "default"), [(chosen.name, 3)])
    await wait_consumers(roger_management, queue_name(p, "other"), [(chosen.name, 2)])

    batch = [jobs.Record.create({"ledger": str(ledger)}) for _ in range(12)]
    await roger_client.enqueue_many(batch, p)
    await eventually(lambda: len(ended(ledger)) == len(batch), timeout=15)
    assert {e["node"] for e in events(ledger, "start")} == {chosen.name}

    [spec] = json.loads(rogerctl(node_factory, "--json", "partition", "list").stdout)
    assert (spec["nodes"], spec["labels"]) == ([chosen.name], [])

    # Moving the partition moves the consumers; no selection means every node again.
    moved = rogerctl(
        node_factory, "partition", "start", p, "default=3", "other=2", "--nodes", f"{first.name},{third.name}"
    )
    assert moved.returncode == 0, moved.stderr
    await wait_consumers(roger_management, queue_name(p, "default"), [(first.name, 3), (third.name, 3)])
    everywhere = rogerctl(node_factory, "partition", "start", p, "default=3", "other=2")
    assert everywhere.returncode == 0, everywhere.stderr
    await wait_consumers(
        roger_management, queue_name(p, "other"), [(n.name, 2) for n in (first, chosen, third)]
    )


async def test_a_partition_limited_to_labels_runs_on_nodes_carrying_all_of_them(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, roger_management: Management
) -> None:
    p = roger_partition
    await node_factory.start("gpu1", args=["--label", "gpu"])
    await node_factory.start("gpu2", ROGER_LABELS="gpu,ssd")
    await node_factory.start("plain")

    nodes = json.loads(rogerctl(node_factory, "--json", "nodes").stdout)
    assert {n["name"]: n["labels"] for n in nodes} == {"gpu1": ["gpu"], "gpu2": ["gpu", "ssd"], "plain": []}
    human = rogerctl(node_factory, "nodes").stdout.splitlines()
    assert human[0].split()[-1] == "LABELS"
    assert next(line for line in human if line.startswith("gpu2")).split()[-1] == "gpu,ssd"

    assert rogerctl(node_factory, "partition", "start", p, "default=2", "--labels", "gpu").returncode == 0
    await wait_consumers(roger_management, queue_name(p, "default"), [("gpu1", 2), ("gpu2", 2)])
    both = rogerctl(node_factory, "partition", "start", p, "default=2", "--labels", "gpu", "--labels", "ssd")
    assert both.returncode == 0, both.stderr
    await wait_consumers(roger_management, queue_name(p, "default"), [("gpu2", 2)])
    narrowed = await roger_client.start_partition(p, {"default": 2}, nodes=["gpu1"], labels=["gpu"])
    assert (narrowed.nodes, narrowed.labels) == (("gpu1",), ("gpu",))
    await wait_consumers(roger_management, queue_name(p, "default"), [("gpu1", 2)])


async def test_a_nodes_concurrency_override_shows_as_its_prefetch(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, roger_management: Management
) -> None:
    p = roger_partition
    await node_factory.start("big", args=["--concurrency", f"{p}.default=7"])
    await node_factory.start("small", ROGER_CONCURRENCY=f"{p}.other=1,{p}.default=1")
    await node_factory.start("usual")
    await roger_client.start_partition(p, {"default": 3, "other": 2})
    await wait_consumers(roger_management, queue_name(p, "default"), [("big", 7), ("small", 1), ("usual", 3)])
    await wait_consumers(roger_management, queue_name(p, "other"), [("big", 2), ("small", 1), ("usual", 2)])

    # A new partition concurrency changes the nodes without an override only.
    await roger_client.start_partition(p, {"default": 5, "other": 2})
    await wait_consumers(roger_management, queue_name(p, "default"), [("big", 7), ("small", 1), ("usual", 5)])


async def test_bad_placement_flags_exit_2(node_factory: NodeFactory, roger_partition: str) -> None:
    bad_node = rogerctl(node_factory, "partition", "start", roger_partition, "default=1", "--nodes", "a b")
    assert bad_node.returncode == 2 and "node name 'a b' is not allowed" in bad_node.stderr
    bad_label = rogerctl(node_factory, "partition", "start", roger_partition, "default=1", "--labels", "x/y")
    assert bad_label.returncode == 2 and "label name 'x/y' is not allowed" in bad_label.stderr
    node = node_factory.spawn("n1", args=["--concurrency", "nodot=3"])
    assert await node.wait_exit(30) == 2
    assert "must look like PARTITION.QUEUE=N" in node.log()
