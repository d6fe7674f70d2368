"""A job that kills its node every time ends in the buried queue, not in a crash loop."""

from __future__ import annotations

from pathlib import Path

from roger_cluster import Client
from roger_cluster.testing import NodeFactory, NodeProcess, eventually
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.servers import EtcdEndpoint, RabbitEndpoint
from tests import jobs


async def test_a_job_that_kills_its_node_is_buried_after_the_delivery_limit(
    node_factory: NodeFactory,
    roger_partition: str,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    ledger: Path,
) -> None:
    limit = "2"
    client = Client(roger_rabbitmq.amqp_url, roger_etcd.endpoints, roger_namespace, delivery_limit=2)
    async with client:
        await client.start_partition(roger_partition, {"default": 1})
        poison = jobs.Crash.create({"ledger": str(ledger)})
        good = jobs.Record.create({"ledger": str(ledger)})
        await client.enqueue_many([poison, good], roger_partition)

        # A supervisor would restart the node; so does this test, a bounded number of times.
        node = node_factory.spawn("victim", jobs="tests.jobs", ROGER_DELIVERY_LIMIT=limit)
        for _ in range(8):
            if ended(ledger)[good.id] and await client.buried(roger_partition, "default"):
                break
            code = await _exit_or_none(node)
            if code is not None:
                assert code == 3, node.log()
                node = node_factory.spawn("victim", jobs="tests.jobs", ROGER_DELIVERY_LIMIT=limit)
        await eventually(lambda: ended(ledger)[good.id] == 1, timeout=30)
        [buried] = await eventually(lambda: client.buried(roger_partition, "default"), timeout=30)
        assert buried.id == poison.id
        assert "delivery limit" in buried.reason
        assert len(events(ledger, "start", poison.id)) == 2  # the node buries it at the limit
        assert node.returncode is None  # the last node lives on


async def _exit_or_none(node: NodeProcess) -> int | None:
    """The node's exit code, or None if it still runs after a while."""
    try:
        return await node.wait_exit(10)
    except AssertionError:
        return None
