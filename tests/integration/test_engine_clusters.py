"""Clusters of the engines: losing one etcd member or one broker changes nothing users see."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

from roger_cluster import Client, RogerError
from roger_cluster.management import Management
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended
from roger_cluster.testing.rabbitmq import delete_test_objects
from roger_cluster.testing.rogerctl import rogerctl
from roger_cluster.testing.servers import EtcdServer, RabbitEndpoint, RabbitServer
from tests import jobs


async def test_stopping_any_one_etcd_member_changes_nothing_users_see(
    etcd_cluster: list[EtcdServer],
    roger_rabbitmq: RabbitEndpoint,
    roger_namespace: str,
    roger_partition: str,
    roger_management: Management,
    tmp_path: Path,
    ledger: Path,
) -> None:
    endpoints = ",".join(m.endpoint.endpoints for m in etcd_cluster)
    factory = NodeFactory(roger_rabbitmq.amqp_url, endpoints, roger_namespace, tmp_path)
    try:
        nodes = await factory.start_many(2, jobs="tests.jobs")
        async with Client(roger_rabbitmq.amqp_url, endpoints, roger_namespace) as client:
            for round_, member in enumerate(etcd_cluster):
                member.stop()
                partition = f"{roger_partition}r{round_}"
                # The CLI and the client work; the nodes stay registered and follow the map.
                listed = rogerctl(factory, "nodes")
                assert listed.returncode == 0, listed.stderr
                assert all(n.name in listed.stdout for n in nodes)
                await client.start_partition(partition, {"default": 3})

                async def consumed(queue: str = queue_name(partition, "default")) -> bool:
                    return len(await roger_management.consumers(queue)) == 2

                await eventually(consumed, timeout=15)
                job = jobs.Record.create({"ledger": str(ledger)})
                await client.enqueue(job, partition)
                await eventually(partial(_ran, ledger, job.id), timeout=15)
                assert sorted(n.name for n in await client.nodes()) == sorted(n.name for n in nodes)
                member.start()
        assert all(n.returncode is None for n in nodes)
    finally:
        factory.cleanup()
        await delete_test_objects(roger_management, roger_namespace, roger_partition)


def _ran(ledger: Path, job_id: str) -> bool:
    return ended(ledger)[job_id] == 1


async def test_a_node_moves_to_another_broker_when_its_broker_stops_and_loses_no_job(
    rabbitmq_cluster: list[RabbitServer],
    roger_etcd_endpoints: str,
    roger_namespace: str,
    roger_partition: str,
    tmp_path: Path,
    ledger: Path,
) -> None:
    brokers = ",".join(s.endpoint.amqp_url for s in rabbitmq_cluster)
    factory = NodeFactory(brokers, roger_etcd_endpoints, roger_namespace, tmp_path)
    confirmed: set[str] = set()
    try:
        nodes = await factory.start_many(2, jobs="tests.jobs")
        async with Client(brokers, roger_etcd_endpoints, roger_namespace) as client:
            await client.start_partition(roger_partition, {"default": 5})

            async def produce(count: int) -> None:
                while len(confirmed) < count:
                    job = jobs.Record.create({"ledger": str(ledger), "sleep": 0.01})
                    try:
                        confirmed.add(await client.enqueue(job, roger_partition))
                    except RogerError:
                        await asyncio.sleep(0.1)  # the broker went away under the client: try again

            await produce(200)
            await eventually(lambda: len(ended(ledger)) > 50, timeout=30)
            first = rabbitmq_cluster[0]
            await asyncio.to_thread(first.stop)  # everyone was connected to the first broker
            await produce(400)
            await eventually(lambda: set(ended(ledger)) >= confirmed, timeout=60, interval=0.2)
        moved = f"connected to RabbitMQ at amqp://127.0.0.1:{rabbitmq_cluster[1].amqp_port}/"
        assert all(moved in node.log() for node in nodes)
        assert all(node.returncode is None for node in nodes)
    finally:
        factory.cleanup()
