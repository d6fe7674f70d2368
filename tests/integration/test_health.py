"""The node's HTTP endpoints, scraped from a live node."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from collections.abc import Awaitable
from pathlib import Path

from roger_cluster import Client
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended
from roger_cluster.testing.servers import EtcdServer, free_ports
from tests import jobs


async def get(url: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    return await asyncio.to_thread(fetch)


def sample(metrics: str, name: str, partition: str) -> float:
    pattern = rf'^{name}\{{partition="{partition}",queue="default"\}} (\S+)$'
    found = re.search(pattern, metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_live_node_serves_health_readiness_and_job_metrics(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    (port,) = free_ports(1)
    base = f"http://127.0.0.1:{port}"
    await node_factory.start(jobs="tests.jobs", ROGER_HTTP=f"127.0.0.1:{port}", ROGER_RETRY_LEVELS="1")
    assert await get(f"{base}/healthz") == (200, "ok\n")
    assert await get(f"{base}/readyz") == (200, "ready\n")
    assert (await get(f"{base}/nope"))[0] == 404

    await roger_client.start_partition(roger_partition, {"default": 3})
    ok = [jobs.Record.create({"ledger": str(ledger)}) for _ in range(5)]
    await roger_client.enqueue_many([*ok, jobs.AlwaysFails.create({"ledger": str(ledger)})], roger_partition)
    await eventually(lambda: all(ended(ledger)[j.id] == 1 for j in ok), timeout=15)

    async def counted() -> bool:
        _, text = await get(f"{base}/metrics")
        assert sample(text, "roger_jobs_succeeded_total", roger_partition) == 5
        assert sample(text, "roger_jobs_started_total", roger_partition) == 7  # 5 + the failing one twice
        assert sample(text, "roger_jobs_failed_total", roger_partition) == 2
        assert sample(text, "roger_jobs_retried_total", roger_partition) == 1
        assert sample(text, "roger_jobs_buried_total", roger_partition) == 1
        assert sample(text, "roger_job_duration_seconds_count", roger_partition) == 7
        assert "roger_consumers 1.0" in text and "roger_amqp_connected 1.0" in text
        return True

    await eventually(counted, timeout=20)


async def test_readyz_says_when_etcd_is_gone_and_comes_back(
    private_etcd: EtcdServer, roger_rabbitmq_url: str, roger_namespace: str, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    factory = NodeFactory(roger_rabbitmq_url, private_etcd.endpoint.endpoints, roger_namespace, tmp_path)
    try:
        await factory.start(ROGER_HTTP=f"127.0.0.1:{port}")
        readyz = f"http://127.0.0.1:{port}/readyz"
        assert await get(readyz) == (200, "ready\n")
        private_etcd.stop()
        await eventually(lambda: _is(get(readyz), (503, "etcd does not answer\n")), timeout=15)
        assert (await get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
        private_etcd.start()
        await eventually(lambda: _is(get(readyz), (200, "ready\n")), timeout=15)
    finally:
        factory.cleanup()


async def _is(response: Awaitable[tuple[int, str]], expected: tuple[int, str]) -> bool:
    return (await response) == expected
