"""`--replicas K`: a partition on K of the eligible live nodes, by rendezvous hashing.

Real nodes, a real etcd and RabbitMQ: the consumers the management API shows
are the K nodes `placement.chosen` picks from the live members; a node killed
with SIGKILL is replaced once its lease expires (TTL 3 s here) and its jobs
run elsewhere; a node that joins takes over only the partitions it now wins;
a pause holds on a replacement, and a drain waits for a node that is no longer
chosen but still runs one of the partition's jobs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roger_cluster import Client, SyncClient
from roger_cluster.cluster.partitions import PartitionSpec
from roger_cluster.management import Management
from roger_cluster.names import queue_name
from roger_cluster.placement import chosen
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.consumers import wait_consumers
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.rogerctl import rogerctl
from roger_cluster.testing.servers import EtcdEndpoint, RabbitEndpoint
from tests import jobs

LEASE_TTL = 3  # the node factory's ROGER_LEASE_TTL


def live(*names: str, labels: frozenset[str] = frozenset()) -> dict[str, frozenset[str]]:
    return dict.fromkeys(names, labels)


@pytest.fixture
async def many_partitions(roger_partition: str, roger_management: Management) -> AsyncIterator[str]:
    """A prefix for partitions of this test's own (`<prefix>0`, `<prefix>1`, ...); their
    queues are deleted after the nodes are gone (this fixture is set up first)."""
    prefix = f"{roger_partition}_"
    yield prefix
    await roger_management.delete_queues(prefix)


async def test_a_chosen_node_killed_is_replaced_within_the_lease_ttl_and_no_job_is_lost(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p = roger_partition
    nodes = {n.name: n for n in await node_factory.start_many(3, jobs="tests.jobs")}
    started = rogerctl(node_factory, "partition", "start", p, "default=2", "--replicas", "2")
    assert started.returncode == 0, started.stderr
    assert "on every node, replicas=2" in started.stdout
    spec = PartitionSpec(p, {"default": 2}, replicas=2)
    first = chosen(spec, live(*nodes))
    await wait_consumers(roger_management, queue_name(p, "default"), [(n, 2) for n in first])
    shown = rogerctl(node_factory, "partition", "show", p).stdout
    assert f"placement: replicas 2 of 3 eligible: {', '.join(first)} (rendezvous)" in shown

    batch = [jobs.Record.create({"ledger": str(ledger), "sleep": 0.4}) for _ in range(24)]
    await roger_client.enqueue_many(batch, p)
    victim, spare = first[0], next(n for n in nodes if n not in first)
    await eventually(lambda: any(e["node"] == victim for e in events(ledger, "start")), timeout=15)
    nodes[victim].kill()
    killed_at = time.time()

    def spare_started() -> bool:
        return any(e["node"] == spare for e in events(ledger, "start"))

    await eventually(spare_started, timeout=LEASE_TTL + 2 + 3, message=f"{spare} takes {victim}'s place")
    took = min(float(e["t"]) for e in events(ledger, "start") if e["node"] == spare) - killed_at
    print(f"{spare} ran its first job of {p} {took:.2f}s after {victim} was killed (lease TTL {LEASE_TTL}s)")
    await eventually(lambda: set(ended(ledger)) == {job.id for job in batch}, timeout=30)
    survivors = chosen(spec, live(*(n for n in nodes if n != victim)))
    assert spare in survivors
    await wait_consumers(roger_management, queue_name(p, "default"), [(n, 2) for n in survivors])


async def test_a_node_that_joins_takes_only_the_partitions_it_now_wins_and_running_jobs_finish_where_they_are(
    many_partitions: str,
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    ledger: Path,
) -> None:
    before = [n.name for n in await node_factory.start_many(3, jobs="tests.jobs")]
    newcomer = f"node{len(before) + 1}"  # the factory's next name
    after = [*before, newcomer]

    def spec(i: int) -> PartitionSpec:
        return PartitionSpec(f"{many_partitions}{i}", {"default": 1}, replicas=1)

    # Twelve partitions, and more until at least one of them moves to the newcomer.
    count = 12
    while not any(chosen(spec(i), live(*after)) != chosen(spec(i), live(*before)) for i in range(count)):
        count += 1
    specs = [spec(i) for i in range(count)]
    # Started three ways: Client.set_partition, Client.ensure_partition, SyncClient.set_partition.
    sync = SyncClient(roger_rabbitmq.amqp_url, roger_etcd.endpoints, roger_client.namespace)
    try:
        for i, s in enumerate(specs):
            if i % 3 == 0:
                assert await roger_client.set_partition(s.name, s.queues, replicas=1) == s
            elif i % 3 == 1:
                assert await roger_client.ensure_partition(s.name, s.queues, replicas=1) == s
            else:
                assert await asyncio.to_thread(sync.set_partition, s.name, s.queues, replicas=1) == s
    finally:
        await asyncio.to_thread(sync.close)
    for s in specs:
        await wait_consumers(
            roger_management, queue_name(s.name, "default"), [(chosen(s, live(*before))[0], 1)]
        )

    movers = [s for s in specs if chosen(s, live(*after)) != chosen(s, live(*before))]
    slow = jobs.Record.create({"ledger": str(ledger), "sleep": 3})
    await roger_client.enqueue(slow, movers[0].name)
    await eventually(lambda: bool(events(ledger, "start", slow.id)), timeout=15)

    await node_factory.start(newcomer, jobs="tests.jobs")
    for s in specs:
        [where] = chosen(s, live(*after))
        assert where in (newcomer, *chosen(s, live(*before)))  # nothing moves between the old nodes
        await wait_consumers(roger_management, queue_name(s.name, "default"), [(where, 1)])
    print(f"a 4th node joined: {len(movers)} of {len(specs)} partitions moved, all to it")

    # The job running where its partition used to be finished there, once.
    await eventually(lambda: ended(ledger)[slow.id] == 1, timeout=15)
    assert [e["node"] for e in events(ledger, "start", slow.id)] == list(chosen(movers[0], live(*before)))


async def test_labels_choose_who_is_eligible_and_replicas_how_many_of_them(
    node_factory: NodeFactory, roger_partition: str, roger_management: Management
) -> None:
    p = roger_partition
    await node_factory.start("gpu1", args=["--label", "gpu"])
    await node_factory.start("gpu2", ROGER_LABELS="gpu")
    await node_factory.start("plain")
    members = {**live("gpu1", "gpu2", labels=frozenset({"gpu"})), **live("plain")}

    one = rogerctl(node_factory, "partition", "start", p, "default=2", "--labels", "gpu", "--replicas", "1")
    assert one.returncode == 0, one.stderr
    [picked] = chosen(PartitionSpec(p, {"default": 2}, labels=("gpu",), replicas=1), members)
    assert picked in ("gpu1", "gpu2")
    await wait_consumers(roger_management, queue_name(p, "default"), [(picked, 2)])
    shown = rogerctl(node_factory, "partition", "show", p).stdout
    assert f"placement: replicas 1 of 2 eligible: {picked} (rendezvous)" in shown

    three = rogerctl(node_factory, "partition", "start", p, "default=2", "--labels", "gpu", "--replicas", "3")
    assert three.returncode == 0, three.stderr
    await wait_consumers(roger_management, queue_name(p, "default"), [("gpu1", 2), ("gpu2", 2)])
    shown = rogerctl(node_factory, "partition", "show", p).stdout
    assert "placement: replicas 3, but only 2 eligible: all of them: gpu1, gpu2" in shown
    listed = rogerctl(node_factory, "partition", "list").stdout
    assert "labels=gpu, replicas=3" in listed

    bad = rogerctl(node_factory, "partition", "start", p, "default=2", "--replicas", "0")
    assert bad.returncode == 2 and "replicas of partition" in bad.stderr


async def test_a_pause_holds_on_the_node_that_replaces_a_dead_one(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, roger_management: Management
) -> None:
    p = roger_partition
    nodes = {n.name: n for n in await node_factory.start_many(2, jobs="tests.jobs")}
    spec = PartitionSpec(p, {"default": 1, "other": 1}, replicas=1)
    await roger_client.set_partition(p, spec.queues, replicas=1)
    [first] = chosen(spec, live(*nodes))
    [second] = set(nodes) - {first}
    await wait_consumers(roger_management, queue_name(p, "other"), [(first, 1)])
    await roger_client.pause_queue(p, "other")
    await wait_consumers(roger_management, queue_name(p, "other"), [])

    nodes[first].kill()
    await wait_consumers(roger_management, queue_name(p, "default"), [(second, 1)], timeout=LEASE_TTL + 15)
    shown = rogerctl(node_factory, "partition", "show", p).stdout
    assert f"placement: replicas 1, but only 1 eligible: all of them: {second}" in shown
    assert await roger_client.resume_queue(p, "other")
    await wait_consumers(roger_management, queue_name(p, "other"), [(second, 1)])


async def test_a_drain_waits_for_a_node_no_longer_chosen_that_still_runs_a_job(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p = roger_partition
    names = [n.name for n in await node_factory.start_many(2, jobs="tests.jobs")]
    spec = PartitionSpec(p, {"default": 1}, replicas=1)
    await roger_client.set_partition(p, spec.queues, replicas=1)
    [first] = chosen(spec, live(*names))
    [second] = set(names) - {first}
    await wait_consumers(roger_management, queue_name(p, "default"), [(first, 1)])
    slow = jobs.Record.create({"ledger": str(ledger), "sleep": 4})
    await roger_client.enqueue(slow, p)
    await eventually(lambda: bool(events(ledger, "start", slow.id)), timeout=15)

    # The first node is no longer eligible: it stops taking jobs, its running one goes on.
    await roger_client.set_partition(p, spec.queues, nodes=[second], replicas=1)
    await wait_consumers(roger_management, queue_name(p, "default"), [(second, 1)])
    assert ended(ledger)[slow.id] == 0
    stop = await asyncio.to_thread(
        rogerctl, node_factory, "partition", "stop", p, "--drain", "--timeout", "30"
    )
    assert stop.returncode == 0, stop.stderr
    drained_at = time.time()
    [end] = events(ledger, "end", slow.id)
    assert end["node"] == first and float(end["t"]) <= drained_at
    assert [e["node"] for e in events(ledger, "start", slow.id)] == [first]
