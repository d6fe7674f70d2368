"""Convergence after an etcd or RabbitMQ restart, against private servers of the test's own.

The node is a reconciler: whatever broke, it converges back to the partition
map once the server answers again, without a restart of the node.
"""

from __future__ import annotations

import json
from pathlib import Path

from roger_cluster import Client
from roger_cluster.management import Management
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.servers import EtcdServer, RabbitServer
from tests import jobs
from tests.ledger import ended


async def test_a_node_keeps_working_while_etcd_is_down_and_follows_the_map_after(
    private_etcd: EtcdServer,
    roger_rabbitmq_url: str,
    roger_namespace: str,
    roger_partition: str,
    roger_management: Management,
    tmp_path: Path,
) -> None:
    factory = NodeFactory(roger_rabbitmq_url, private_etcd.endpoint.endpoints, roger_namespace, tmp_path)
    ledger = tmp_path / "ledger"
    try:
        async with Client(roger_rabbitmq_url, private_etcd.endpoint.endpoints, roger_namespace) as client:
            await client.start_partition(roger_partition, {"default": 3})
            node = await factory.start(jobs="tests.jobs")
            private_etcd.stop()

            # Jobs still run: the hot path needs no etcd.
            job = jobs.Record.create({"ledger": str(ledger)})
            await client.enqueue(job, roger_partition)
            await eventually(lambda: ended(ledger)[job.id] == 1, timeout=15)

            private_etcd.start()
            await client.start_partition(roger_partition, {"default": 3, "late": 2})

            async def late_consumed() -> bool:
                consumers = await roger_management.consumers(f"{roger_partition}-late")
                return [c.prefetch_count for c in consumers] == [2]

            await eventually(late_consumed, timeout=20)
            names = [n.name for n in await client.nodes()]
            assert names == [node.name]
            assert node.returncode is None
    finally:
        factory.cleanup()
        await roger_management.delete_queues(roger_partition + "-")


async def test_a_node_restores_its_consumers_and_prefetch_after_a_rabbitmq_restart(
    private_rabbitmq: RabbitServer,
    roger_etcd_endpoints: str,
    roger_namespace: str,
    roger_partition: str,
    tmp_path: Path,
) -> None:
    amqp_url = private_rabbitmq.endpoint.amqp_url
    management = Management(private_rabbitmq.endpoint.management_url)
    factory = NodeFactory(amqp_url, roger_etcd_endpoints, roger_namespace, tmp_path)
    ledger = tmp_path / "ledger"
    try:
        async with Client(amqp_url, roger_etcd_endpoints, roger_namespace) as client:
            await client.start_partition(roger_partition, {"default": 4, "other": 7})
            await factory.start_many(2, jobs="tests.jobs")

            async def prefetches() -> dict[str, list[int]]:
                return {
                    q: [c.prefetch_count for c in await management.consumers(f"{roger_partition}-{q}")]
                    for q in ("default", "other")
                }

            expected = {"default": [4, 4], "other": [7, 7]}
            await eventually(lambda: _equal(prefetches(), expected), timeout=15)

            private_rabbitmq.stop()
            private_rabbitmq.start()
            await eventually(lambda: _equal(prefetches(), expected), timeout=30)

            # The client's connection died with the broker: the next call reconnects by itself.
            job = jobs.Record.create({"ledger": str(ledger)})
            await client.enqueue(job, roger_partition)
            await eventually(lambda: ended(ledger)[job.id] == 1, timeout=15)
            assert all(n.returncode is None for n in factory.nodes)
            assert json.loads(ledger.read_text().splitlines()[0])["id"] == job.id
    finally:
        factory.cleanup()


async def _equal(actual: object, expected: object) -> bool:
    value = await actual  # type: ignore[misc]
    assert value == expected
    return True
