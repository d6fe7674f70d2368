"""A connection closed by the broker while keyed jobs run: one warning, no stray tracebacks.

Keyed jobs (docs/keys.md) run in chains on channels of their own; when RabbitMQ
closes the node's connection every one of them ends at once. The node says so
once and converges again; no task's exception goes unretrieved.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from roger_cluster import Client
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.consumers import consumers
from roger_cluster.testing.ledger import events
from roger_cluster.testing.servers import RabbitServer
from tests import jobs


async def test_a_connection_closed_by_the_broker_during_keyed_jobs_logs_one_warning_and_no_traceback(
    private_rabbitmq: RabbitServer,
    roger_etcd_endpoints: str,
    roger_namespace: str,
    roger_partition: str,
    tmp_path: Path,
    ledger: Path,
) -> None:
    amqp_url = private_rabbitmq.endpoint.amqp_url
    factory = NodeFactory(amqp_url, roger_etcd_endpoints, roger_namespace, tmp_path)
    try:
        async with Client(amqp_url, roger_etcd_endpoints, roger_namespace) as client:
            await client.start_partition(roger_partition, {"default": 8})
            node = await factory.start(jobs="tests.jobs")
            name = queue_name(roger_partition, "default")
            await eventually(lambda: consumers(client, name, 1), timeout=10)
            for seq in range(4):
                for key in range(8):
                    args = {"ledger": str(ledger), "key": f"k{key}", "seq": seq, "sleep": 0.5}
                    job = jobs.Serial.create(args)
                    await client.enqueue(job, roger_partition)
            await eventually(lambda: len(events(ledger, "start")) >= 12, timeout=15)

        private_rabbitmq.ctl("close_all_connections", "closed by the test")
        await eventually(lambda: "connected to RabbitMQ" in node.log(), timeout=15)
        async with Client(amqp_url, roger_etcd_endpoints, roger_namespace) as client:
            await eventually(lambda: consumers(client, name, 1), timeout=15)
            # Keys whose wake failed while the node was cut off are woken once it is back,
            # well before the periodic scan (every 30 s) would find them.
            await eventually(lambda: len({e["id"] for e in events(ledger, "end")}) == 32, timeout=20)
            await asyncio.sleep(2)  # late failures would be logged by now
        log = node.log()
        assert "never retrieved" not in log and "Traceback" not in log, log
        warnings = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
        # One line for the event; besides it, only one per job that will run again, and the
        # history's own (its connection was closed too: the batch in flight is dropped).
        about_jobs = [line for line in warnings if "could not settle job" in line or "job history:" in line]
        assert len(warnings) - len(about_jobs) == 1, log
        assert sum("lost the connection to RabbitMQ" in line for line in warnings) == 1, log
    finally:
        factory.cleanup()
