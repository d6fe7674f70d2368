"""Clusters of the engines: losing one etcd member or one broker changes nothing users see."""

from __future__ import annotations

import asyncio
from collections import Counter
from functools import partial
from pathlib import Path

from roger_cluster import Client, RogerError
from roger_cluster.broker.spread import broker_order
from roger_cluster.config import AmqpConfig
from roger_cluster.management import Management
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, equals, eventually
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


def _spread_names(brokers: list[str], per_broker: int) -> list[str]:
    """Node names that rank each broker first `per_broker` times (the ports are new on
    every run, so fixed names would land anywhere: about 1 run in 4 would leave a
    broker without a node of 6)."""
    chosen: dict[int, list[str]] = {i: [] for i in range(len(brokers))}
    for i in range(1000):
        first = broker_order(brokers, f"node{i}")[0]
        if len(chosen[first]) < per_broker:
            chosen[first].append(f"node{i}")
    return [name for names in chosen.values() for name in names]


async def _connections(management: Management, names: set[str]) -> dict[str, str]:
    """Node name -> the RabbitMQ member its connection is on, for `names`."""
    found = await management.api("/api/connections?columns=node,user_provided_name") or []
    assert isinstance(found, list)
    return {c["user_provided_name"]: c["node"] for c in found if c.get("user_provided_name") in names}


async def _leaders(management: Management, prefix: str) -> dict[str, str]:
    found = await management.api("/api/queues/%2F?columns=name,leader") or []
    assert isinstance(found, list)
    return {q["name"]: q.get("leader", "") for q in found if q["name"].startswith(prefix)}


async def test_nodes_spread_over_the_brokers_and_a_stopped_broker_loses_no_job(
    rabbitmq_cluster: list[RabbitServer],
    roger_etcd_endpoints: str,
    roger_namespace: str,
    roger_partition: str,
    tmp_path: Path,
    ledger: Path,
) -> None:
    urls = [s.endpoint.amqp_url for s in rabbitmq_cluster]
    members = [s.node_name for s in rabbitmq_cluster]
    identities = [AmqpConfig(url=u).describe(u) for u in urls]
    factory = NodeFactory(",".join(urls), roger_etcd_endpoints, roger_namespace, tmp_path)
    management = Management(rabbitmq_cluster[1].endpoint.management_url)
    confirmed: set[str] = set()
    try:
        async with Client(",".join(urls), roger_etcd_endpoints, roger_namespace) as client:
            # Quorum queue leaders spread too: 3 queues and their buried queues, 2 per member,
            # though the client declared them all through one member.
            await client.start_partition(roger_partition, {"default": 5, "more": 1, "other": 1})

            async def spread() -> bool:
                leaders = await _leaders(management, roger_partition)
                assert sorted(Counter(leaders.values()).values()) == [2, 2, 2], leaders
                return True

            await eventually(spread, timeout=15)
            names = _spread_names(identities, 2)
            nodes = [await factory.start(name, jobs="tests.jobs") for name in names]
            home = {n: members[broker_order(identities, n)[0]] for n in names}
            await eventually(lambda: equals(_connections(management, set(names)), home), timeout=15)
            assert sorted(Counter(home.values()).values()) == [2, 2, 2]

            async def produce(count: int) -> None:
                while len(confirmed) < count:
                    job = jobs.Record.create({"ledger": str(ledger), "sleep": 0.01})
                    try:
                        confirmed.add(await client.enqueue(job, roger_partition))
                    except RogerError:
                        await asyncio.sleep(0.1)  # the broker went away under the client: try again

            await produce(150)
            await eventually(lambda: len(ended(ledger)) > 50, timeout=30)
            stopped = rabbitmq_cluster[0]
            await asyncio.to_thread(stopped.stop)  # two nodes lose their broker
            await produce(300)
            await eventually(lambda: set(ended(ledger)) >= confirmed, timeout=60, interval=0.2)
        # Those two moved to their second choice; the others stayed where they were.
        second = {n: members[broker_order(identities, n)[1]] for n in names}
        moved = {n: second[n] if m == stopped.node_name else m for n, m in home.items()}
        await eventually(lambda: equals(_connections(management, set(names)), moved), timeout=15)
        assert all(node.returncode is None for node in nodes)
    finally:
        factory.cleanup()
        await management.close()
