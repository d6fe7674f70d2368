"""SyncClient against real servers and real nodes: many threads, a fork, the environment,
the default partition."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from roger_cluster import BrokerError, Client, ClientClosed, ClusterError, ConfigError, SyncClient
from roger_cluster.cluster.partitions import PartitionSpec
from roger_cluster.management import Management
from roger_cluster.testing import NodeFactory, ended, events, eventually, start_consuming
from roger_cluster.testing.etcd import EtcdEndpoint
from roger_cluster.testing.rabbitmq import RabbitEndpoint
from roger_cluster.testing.servers import EtcdServer, RabbitServer
from tests.jobs import Record

REPO = Path(__file__).resolve().parents[2]
JOBS = 800
THREADS = 8


def sync_client(rabbitmq: RabbitEndpoint, etcd: EtcdEndpoint, namespace: str, partition: str) -> SyncClient:
    return SyncClient(rabbitmq.amqp_url, etcd.endpoints, namespace, partition=partition)


def environment(
    rabbitmq: RabbitEndpoint, etcd: EtcdEndpoint, namespace: str, partition: str
) -> dict[str, str]:
    return {
        "ROGER_AMQP_URL": rabbitmq.amqp_url,
        "ROGER_ETCD": etcd.endpoints,
        "ROGER_NAMESPACE": namespace,
        "ROGER_PARTITION": partition,
    }


async def test_eight_threads_enqueue_through_one_sync_client_and_every_job_runs_once(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    roger_partition: str,
    ledger: Path,
) -> None:
    await start_consuming(
        node_factory,
        roger_client,
        roger_management,
        roger_partition,
        {"default": 20},
        nodes=2,
        jobs="tests.jobs",
    )
    roger = sync_client(roger_rabbitmq, roger_etcd, roger_namespace, roger_partition)

    def enqueue_all() -> list[str]:
        with ThreadPoolExecutor(THREADS) as pool:
            return list(
                pool.map(lambda i: roger.enqueue(Record.create({"ledger": str(ledger), "i": i})), range(JOBS))
            )

    try:
        ids = await asyncio.to_thread(enqueue_all)
        assert len(set(ids)) == JOBS
        await eventually(lambda: sum(ended(ledger).values()) >= JOBS, timeout=60)
        await asyncio.sleep(0.5)  # a duplicate would show up within this; the count must stay exact
        runs = ended(ledger)
        assert set(runs) == set(ids)
        assert set(runs.values()) == {1}
        assert await asyncio.to_thread(lambda: {n.name for n in roger.nodes()}) == {"node1", "node2"}
    finally:
        await asyncio.to_thread(roger.close)
    with pytest.raises(ClientClosed, match="closed"):
        roger.enqueue(Record.create({"ledger": str(ledger)}))
    await asyncio.to_thread(roger.close)  # a second close is fine


async def test_a_forked_child_gets_a_fresh_connection_and_the_parent_keeps_its_own(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    roger_partition: str,
    ledger: Path,
) -> None:
    await start_consuming(
        node_factory,
        roger_client,
        roger_management,
        roger_partition,
        {"default": 2},
        nodes=1,
        jobs="tests.jobs",
    )
    env = os.environ | environment(roger_rabbitmq, roger_etcd, roger_namespace, roger_partition)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.sync_fork", str(ledger)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reports = {r["who"]: r for r in map(json.loads, done.stdout.splitlines())}
    child, before, after = reports["child"], reports["parent-before"], reports["parent-after"]
    assert child["pid"] != before["pid"] == after["pid"]
    assert child["fresh"] and child["orphans"] == 1  # the parent's loop is forgotten, not reused
    assert after["same"]  # the parent goes on with its own connection
    assert child["nodes"] == before["nodes"] == after["nodes"] == ["node1"]
    jobs = {child["job"], before["job"], after["job"]}
    await eventually(lambda: set(ended(ledger)) == jobs, timeout=15)
    assert set(ended(ledger).values()) == {1}


async def test_from_env_reads_the_variables_and_a_file_secret_and_enqueues_to_the_default_partition(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    roger_partition: str,
    ledger: Path,
    tmp_path: Path,
) -> None:
    await start_consuming(
        node_factory,
        roger_client,
        roger_management,
        roger_partition,
        {"default": 2},
        nodes=1,
        jobs="tests.jobs",
    )
    secret = tmp_path / "amqp-url"
    secret.write_text(roger_rabbitmq.amqp_url + "\n")
    env = environment(roger_rabbitmq, roger_etcd, roger_namespace, roger_partition)
    del env["ROGER_AMQP_URL"]
    env["ROGER_AMQP_URL_FILE"] = str(secret)
    env["ROGER_QUEUE_TYPE"] = "quorum"

    async with Client.from_env(env) as client:
        assert client.namespace == roger_namespace and client.default_partition == roger_partition
        first = await client.enqueue(Record.create({"ledger": str(ledger)}))
        assert [n.name for n in await client.nodes()] == ["node1"]
    with SyncClient.from_env(env) as roger:
        second = await asyncio.to_thread(roger.enqueue, Record.create({"ledger": str(ledger)}))
        third = Record.create({"ledger": str(ledger), "sleep": 30})
        await asyncio.to_thread(roger.enqueue, third)
        await eventually(lambda: third.id in {e["id"] for e in _starts(ledger)}, timeout=15)
        await asyncio.to_thread(roger.cancel, third.id)  # cancel(job_id): the default partition
    await eventually(lambda: {first, second} <= set(ended(ledger)), timeout=15)
    await eventually(lambda: third.id in {e["id"] for e in _stops(ledger)}, timeout=15)


def _starts(ledger: Path) -> list[dict[str, Any]]:
    return events(ledger, "start")


def _stops(ledger: Path) -> list[dict[str, Any]]:
    return events(ledger, "stopped")


async def test_a_call_without_a_partition_and_without_a_default_names_the_fix(
    roger_rabbitmq: RabbitEndpoint, roger_etcd: EtcdEndpoint, roger_namespace: str
) -> None:
    async with Client(roger_rabbitmq.amqp_url, roger_etcd.endpoints, roger_namespace) as client:
        with pytest.raises(ConfigError, match=r"no partition given.*partition=.*ROGER_PARTITION"):
            await client.enqueue(Record.create({}))
        with pytest.raises(ConfigError, match="no partition given"):
            await client.cancel("some-job-id")
    roger = SyncClient(roger_rabbitmq.amqp_url, roger_etcd.endpoints, roger_namespace)
    with roger, pytest.raises(ConfigError, match="no partition given"):
        roger.enqueue_many([Record.create({})])
    with pytest.raises(ConfigError, match="partition"):
        SyncClient(partition="not a name")


async def test_the_sync_client_reconnects_after_rabbitmq_and_etcd_restart(
    private_rabbitmq: RabbitServer, private_etcd: EtcdServer, roger_partition: str
) -> None:
    roger = SyncClient(
        private_rabbitmq.endpoint.amqp_url, private_etcd.endpoint.endpoints, "sync", partition=roger_partition
    )
    try:
        await asyncio.to_thread(roger.set_partition, roger_partition, {"default": 1})
        first = await asyncio.to_thread(roger.enqueue, Record.create({}))

        await asyncio.to_thread(private_rabbitmq.stop)
        with pytest.raises(BrokerError):
            await asyncio.to_thread(roger.enqueue, Record.create({}))
        await asyncio.to_thread(private_rabbitmq.start)
        second = await eventually(lambda: asyncio.to_thread(_try_enqueue, roger), timeout=30)

        await asyncio.to_thread(private_etcd.stop)
        with pytest.raises(ClusterError):
            await asyncio.to_thread(roger.partitions)
        await asyncio.to_thread(private_etcd.start)
        specs = await eventually(lambda: asyncio.to_thread(_try_partitions, roger), timeout=30)
        assert specs is not None and [spec.name for spec in specs] == [roger_partition]
        queued = await asyncio.to_thread(roger.queued, roger_partition, "default")
        assert [job.id for job in queued] == [first, second]  # durable queue, persistent messages
    finally:
        await asyncio.to_thread(roger.close)


def _try_enqueue(roger: SyncClient) -> str | None:
    try:
        return roger.enqueue(Record.create({}))
    except BrokerError:
        return None


def _try_partitions(roger: SyncClient) -> list[PartitionSpec] | None:
    try:
        return roger.partitions()
    except ClusterError:
        return None
