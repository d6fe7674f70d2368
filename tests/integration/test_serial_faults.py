"""Serialized jobs (execution keys) under faults: etcd down at enqueue, a holder
frozen past its lease, a job that kills its node.

Each test runs real servers and real roger-node processes; see test_keys.py
for the happy paths of execution keys.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from roger_cluster import Client, RogerError
from roger_cluster.management import Management
from roger_cluster.names import exec_waiting_queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.servers import EtcdEndpoint, EtcdServer, RabbitEndpoint
from roger_cluster.testing.wait import equals
from tests import jobs


async def _waiting_queue_empty(client: Client, partition: str, key: str) -> bool:
    """Whether the key's waiting queue holds no ready job (a missing queue holds none)."""
    stats = await (await client.broker()).stats(exec_waiting_queue_name(partition, key))
    assert stats is None or stats.ready == 0, f"{stats.ready} job(s) still wait in {stats.name}"
    return True


async def test_a_keyed_enqueue_that_fails_on_etcd_leaves_no_job_behind(
    private_etcd: EtcdServer,
    roger_rabbitmq_url: str,
    roger_namespace: str,
    roger_partition: str,
    roger_management: Management,
    tmp_path: Path,
    ledger: Path,
) -> None:
    p = roger_partition
    etcd = private_etcd.endpoint.endpoints
    factory = NodeFactory(roger_rabbitmq_url, etcd, roger_namespace, tmp_path)
    try:
        async with Client(roger_rabbitmq_url, etcd, roger_namespace) as client:
            await client.start_partition(p, {"default": 1})  # both connections are open now
            private_etcd.stop()
            failed = jobs.Serial.create({"ledger": str(ledger), "key": "k"})
            with pytest.raises(RogerError):  # ClusterConnectionError, within the etcd timeout
                await client.enqueue(failed, p)

        private_etcd.start()
        await factory.start(jobs="tests.jobs")
        async with Client(roger_rabbitmq_url, etcd, roger_namespace) as client:  # a fresh etcd channel
            second = jobs.Serial.create({"ledger": str(ledger), "key": "k"})
            await client.enqueue(second, p)
            await eventually(lambda: ended(ledger)[second.id] == 1, timeout=20)
            await eventually(lambda: _waiting_queue_empty(client, p, "k"), timeout=15)
            ran = events(ledger, "start", failed.id)
            assert ran == [], f"the job whose enqueue raised ran anyway: {ran}"
    finally:
        factory.cleanup()
        await roger_management.delete_queues(p + "-")


async def _consumer_nodes(client: Client, partition: str) -> list[str] | None:
    """The nodes consuming the partition's only queue, as the management API sees them."""
    [queue] = (await client.partition(partition)).queues
    return None if queue.consumer_nodes is None else sorted(c.node for c in queue.consumer_nodes)


def _runs(ledger: Path, ids: set[str]) -> list[dict[str, Any]]:
    """Every run of the given jobs: its start event, with the time of its end (inf if none)."""
    found = [e for e in events(ledger) if e["id"] in ids]
    runs = []
    for i, start in enumerate(found):
        if start["event"] != "start":
            continue
        same = (start["id"], start["node"], start["token"])
        end = next(
            (
                e["t"]
                for e in found[i + 1 :]
                if e["event"] == "end" and (e["id"], e["node"], e["token"]) == same
            ),
            math.inf,
        )
        runs.append({**start, "until": end})
    return runs


async def test_a_holder_that_lost_its_lease_starts_no_new_job_of_the_key(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    p = roger_partition
    holder, other = await node_factory.start_many(2, jobs="tests.jobs")
    # Only `holder` consumes at first, so it takes the key. Then only `other` does:
    # the holder's chain runs on (it takes jobs with basic.get, not from the consumer),
    # and the wake published once the holder's lease expires can only reach `other`,
    # never sit unread in the prefetch of the frozen holder.
    await roger_client.start_partition(p, {"default": 10}, nodes=[holder.name])
    serial = [jobs.Serial.create({"ledger": str(ledger), "key": "k", "seq": i, "sleep": 4}) for i in range(6)]
    for job in serial:
        await roger_client.enqueue(job, p)
    first = (await eventually(lambda: events(ledger, "start"), timeout=15))[0]
    assert first["node"] == holder.name
    await roger_client.start_partition(p, {"default": 10}, nodes=[other.name])
    await eventually(lambda: equals(_consumer_nodes(roger_client, p), [other.name]), timeout=15)

    frozen_at = time.time()
    holder.signal(signal.SIGSTOP)
    try:
        # Test nodes run with a lease TTL of 3 s: the key is free after it and `other` takes it.
        await eventually(
            lambda: any(e["node"] == other.name for e in events(ledger, "start")),
            timeout=20,
            message="(the other node never took the key over)",
        )
    finally:
        holder.signal(signal.SIGCONT)
    await eventually(lambda: all(ended(ledger)[j.id] >= 1 for j in serial), timeout=35)

    runs = _runs(ledger, {j.id for j in serial})
    frozen = [r for r in runs if r["node"] == holder.name and r["t"] < frozen_at][-1]
    stale = [
        r for r in runs if r["node"] == holder.name and r["token"] == frozen["token"] and r["t"] > frozen_at
    ]
    assert stale == [], (
        f"the holder started jobs with its lost token {frozen['token']} after it woke: {stale}"
    )
    overlaps = [
        (a["seq"], a["node"], a["token"], b["seq"], b["node"], b["token"])
        for i, a in enumerate(runs)
        for b in runs[i + 1 :]
        if frozen["id"] not in (a["id"], b["id"]) and a["t"] < b["until"] and b["t"] < a["until"]
    ]
    assert overlaps == [], f"jobs of one key ran at once (seq, node, token): {overlaps}"


async def test_a_serialized_job_that_kills_its_node_is_buried_and_the_key_moves_on(
    node_factory: NodeFactory,
    roger_partition: str,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p = roger_partition
    limit = "2"
    client = Client(roger_rabbitmq.amqp_url, roger_etcd.endpoints, roger_namespace, delivery_limit=2)
    try:
        async with client:
            await client.start_partition(p, {"default": 1})
            poison = jobs.SerialCrash.create({"ledger": str(ledger), "key": "k"})
            good = jobs.Serial.create({"ledger": str(ledger), "key": "k"})
            await client.enqueue(poison, p)
            await client.enqueue(good, p)

            # A supervisor would restart the node; so does this test, a bounded number of times.
            # The budget covers the nodes' periodic scan for keys nobody holds (every 30 s).
            node = node_factory.spawn("victim", jobs="tests.jobs", ROGER_DELIVERY_LIMIT=limit)

            async def moved_on() -> bool:
                return ended(ledger)[good.id] == 1 and bool(await client.buried(p, "default"))

            async def moved_on_or_crashed() -> bool:
                return node.returncode is not None or await moved_on()

            restarts = 0
            deadline = time.monotonic() + 50
            while not await moved_on():
                crashes = len(events(ledger, "start", poison.id))
                left = deadline - time.monotonic()
                blocked = f"(the key stays blocked: the crashing job started {crashes} times)"
                assert left > 0, blocked
                await eventually(moved_on_or_crashed, timeout=left, interval=0.2, message=blocked)
                if node.returncode is not None:
                    assert node.returncode == 3, node.log()
                    crashes = len(events(ledger, "start", poison.id))
                    assert restarts < 8, f"the crashing job killed its node {crashes} times, and goes on"
                    restarts += 1
                    node = node_factory.spawn("victim", jobs="tests.jobs", ROGER_DELIVERY_LIMIT=limit)
            [buried] = await client.buried(p, "default")
            assert buried.id == poison.id
            assert 2 <= len(events(ledger, "start", poison.id)) <= 3  # the limit, plus at most one over
            assert node.returncode is None  # the last node lives on
    finally:
        node_factory.cleanup()
        await roger_management.delete_queues(p + "-")
