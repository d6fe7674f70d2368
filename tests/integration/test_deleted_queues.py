"""Queues deleted on the broker by hand (`rabbitmqctl delete_queue`, the console's
delete button): the partition is still in the map, so the nodes declare the queue
again and consume it within seconds, as after a lost channel."""

from __future__ import annotations

import json
from pathlib import Path

from roger_cluster import Client
from roger_cluster.errors import UnknownQueue
from roger_cluster.management import Management
from roger_cluster.names import buried_queue_name, control_queue_name, queue_name, release_queue_name
from roger_cluster.queue_contents import BuriedJob
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.consumers import consumers
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.rogerctl import rogerctl
from roger_cluster.testing.servers import RabbitServer
from tests import jobs


async def test_a_deleted_partition_queue_is_declared_and_consumed_again_within_seconds(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    nodes = await node_factory.start_many(2, jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 2})
    name = queue_name(roger_partition, "default")
    await eventually(lambda: consumers(roger_client, name, 2), timeout=15)

    assert await roger_management.delete_queue(name)
    await eventually(lambda: consumers(roger_client, name, 2), timeout=10, message=f"consumers of {name}")

    async def one_consumer_per_node() -> bool:
        connections = await roger_management.connection_names()
        listed = await roger_management.consumers(name)
        found = [connections.get(c.connection_name or "", "?") for c in listed]
        assert sorted(found) == sorted(n.name for n in nodes)
        return True

    await eventually(one_consumer_per_node, timeout=15, interval=0.5)
    job = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue(job, roger_partition)
    await eventually(lambda: ended(ledger)[job.id] == 1, timeout=10)
    for node in nodes:  # one warning each, and no lost connection on the way
        assert node.log().count(f"RabbitMQ cancelled the consumer of {name}") == 1, node.log()
        assert "Traceback" not in node.log() and "connected to RabbitMQ" not in node.log(), node.log()


async def test_partition_show_lists_each_node_once_after_a_queue_was_deleted(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
) -> None:
    nodes = await node_factory.start_many(2, jobs="tests.jobs")
    p = roger_partition
    assert rogerctl(node_factory, "partition", "start", p, "default=3").returncode == 0
    await eventually(lambda: consumers(roger_client, queue_name(p, "default"), 2), timeout=15)
    assert await roger_management.delete_queue(queue_name(p, "default"))
    assert rogerctl(node_factory, "partition", "start", p, "default=3").returncode == 0
    await eventually(lambda: consumers(roger_client, queue_name(p, "default"), 2), timeout=10)

    def shown() -> bool:
        [row] = json.loads(rogerctl(node_factory, "--json", "partition", "show", p).stdout)
        assert (row["consumers"], [c["node"] for c in row["consumer_nodes"]]) == (2, [n.name for n in nodes])
        return True

    # The management API reads a stats interval (5 s) late; a stale record would stay.
    await eventually(shown, timeout=20, interval=1.0)
    [line, placement] = rogerctl(node_factory, "partition", "show", p).stdout.splitlines()[1:]
    assert placement.startswith("placement: every live node")
    assert line.split()[-1] == ",".join(n.name for n in nodes)


async def test_the_control_and_release_queues_come_back_when_deleted_with_rabbitmqctl(
    private_rabbitmq: RabbitServer, roger_etcd_endpoints: str, roger_namespace: str, tmp_path: Path
) -> None:
    amqp_url = private_rabbitmq.endpoint.amqp_url
    factory = NodeFactory(amqp_url, roger_etcd_endpoints, roger_namespace, tmp_path)
    try:
        async with Client(amqp_url, roger_etcd_endpoints, roger_namespace) as client:
            node = await factory.start(jobs="tests.jobs")
            releases = release_queue_name(roger_namespace)

            async def answers() -> bool:  # the node answers over its control queue
                return (await client.running(timeout=1.0)).unreachable == []

            await eventually(lambda: consumers(client, releases, 1), timeout=10)
            await eventually(answers, timeout=10)
            # The management API refuses to delete an exclusive queue; rabbitmqctl does it.
            private_rabbitmq.ctl("delete_queue", control_queue_name(roger_namespace, node.name))
            private_rabbitmq.ctl("delete_queue", releases)
            await eventually(lambda: consumers(client, releases, 1), timeout=10, message=releases)
            await eventually(answers, timeout=10, message="control queue")
            assert node.log().count("RabbitMQ cancelled the consumer of") == 2, node.log()
            assert "Traceback" not in node.log() and "connected to RabbitMQ" not in node.log(), node.log()
    finally:
        factory.cleanup()


async def test_a_job_to_bury_after_its_buried_queue_was_deleted_is_buried_not_run_again(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 1})
    buried = buried_queue_name(roger_partition, "default")
    assert await roger_management.delete_queue(buried)

    job = jobs.Fails.create({"ledger": str(ledger)})  # not retryable: buried at its first failure
    await roger_client.enqueue(job, roger_partition)

    async def buried_jobs() -> list[BuriedJob]:
        try:
            return await roger_client.buried(roger_partition, "default")
        except UnknownQueue:
            return []  # not declared again yet

    found = await eventually(buried_jobs, timeout=15)
    assert [b.id for b in found] == [job.id]
    assert len(events(ledger, "start", job.id)) == 1
