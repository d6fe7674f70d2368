"""Convergence after an etcd or RabbitMQ restart, against private servers of the test's own.

The node is a reconciler: whatever broke, it converges back to the partition
map once the server answers again, without a restart of the node.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from roger_cluster import BrokerConnectionError, Client
from roger_cluster.management import Management
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended
from roger_cluster.testing.rabbitmq import delete_test_objects
from roger_cluster.testing.rogerctl import rogerctl
from roger_cluster.testing.servers import EtcdServer, RabbitServer
from tests import jobs


async def test_a_node_keeps_working_while_etcd_is_down_and_follows_the_map_after(
    private_etcd: EtcdServer,
    roger_rabbitmq_url: str,
    roger_namespace: str,
    roger_partition: str,
    roger_management: Management,
    tmp_path: Path,
    ledger: Path,
) -> None:
    factory = NodeFactory(roger_rabbitmq_url, private_etcd.endpoint.endpoints, roger_namespace, tmp_path)
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
                consumers = await roger_management.consumers(queue_name(roger_partition, "late"))
                return [c.prefetch_count for c in consumers] == [2]

            await eventually(late_consumed, timeout=20)
            names = [n.name for n in await client.nodes()]
            assert names == [node.name]

            # The paused set is followed again too.
            await client.pause_queue(roger_partition, "late")

            async def late_paused() -> bool:
                return await roger_management.consumers(queue_name(roger_partition, "late")) == []

            await eventually(late_paused, timeout=20)
            assert node.returncode is None
    finally:
        factory.cleanup()
        await delete_test_objects(roger_management, roger_namespace, roger_partition + "-")


async def test_a_node_restores_its_consumers_and_prefetch_after_a_rabbitmq_restart(
    private_rabbitmq: RabbitServer,
    roger_etcd_endpoints: str,
    roger_namespace: str,
    roger_partition: str,
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger"
    amqp_url = private_rabbitmq.endpoint.amqp_url
    management = Management(private_rabbitmq.endpoint.management_url)
    factory = NodeFactory(amqp_url, roger_etcd_endpoints, roger_namespace, tmp_path)
    try:
        async with Client(amqp_url, roger_etcd_endpoints, roger_namespace) as client:
            await client.start_partition(roger_partition, {"default": 4, "other": 7})
            await factory.start_many(2, jobs="tests.jobs")

            async def prefetches() -> dict[str, list[int]]:
                return {
                    q: [c.prefetch_count for c in await management.consumers(queue_name(roger_partition, q))]
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
        await management.close()


async def _equal(actual: object, expected: object) -> bool:
    value = await actual  # type: ignore[misc]
    assert value == expected
    return True


async def test_enqueue_fails_fast_and_never_reports_success_while_rabbitmq_is_down(
    private_rabbitmq: RabbitServer, roger_etcd_endpoints: str, roger_namespace: str, roger_partition: str
) -> None:
    amqp_url = private_rabbitmq.endpoint.amqp_url
    async with Client(amqp_url, roger_etcd_endpoints, roger_namespace) as client:
        await client.start_partition(roger_partition, {"default": 1})
        private_rabbitmq.stop()
        started = time.monotonic()
        with pytest.raises(BrokerConnectionError, match="cannot reach RabbitMQ"):
            await client.enqueue(jobs.Record.create({"ledger": "/dev/null"}), roger_partition)
        assert time.monotonic() - started < 6  # the connect timeout, not a hang

        # Partition commands still work: they need etcd, which is up.
        assert [p.name for p in await client.partitions()] == [roger_partition]
        private_rabbitmq.start()
        job = jobs.Record.create({"ledger": "/dev/null"})
        assert await client.enqueue(job, roger_partition) == job.id
        stats = await (await client.broker()).stats(queue_name(roger_partition, "default"))
        assert stats is not None and stats.ready == 1  # exactly the confirmed one


async def test_commands_that_need_etcd_fail_clearly_while_it_is_down(
    private_etcd: EtcdServer, roger_rabbitmq_url: str, roger_namespace: str, tmp_path: Path
) -> None:
    factory = NodeFactory(roger_rabbitmq_url, private_etcd.endpoint.endpoints, roger_namespace, tmp_path)
    private_etcd.stop()
    done = rogerctl(factory, "partition", "list")
    assert done.returncode == 1
    assert done.stderr.startswith(f"rogerctl: cannot reach etcd at {private_etcd.endpoint.endpoints}")
    node = factory.spawn("lonely")
    try:
        assert await node.wait_exit(30) == 1
        assert "cannot reach etcd" in node.log()
    finally:
        factory.cleanup()
