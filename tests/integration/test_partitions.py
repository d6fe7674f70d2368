"""Partitions propagate through etcd to every node; RabbitMQ shows it.

What the console would show is read from the management API: one consumer per
node on every partition queue, with prefetch = the queue's concurrency.
"""

from __future__ import annotations

from roger_cluster import Client
from roger_cluster.cluster import keys
from roger_cluster.management import Management
from roger_cluster.names import buried_queue_name, queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.consumers import prefetches, wait_prefetches
from roger_cluster.testing.rogerctl import rogerctl


async def test_every_node_consumes_every_queue_with_prefetch_equal_to_concurrency(
    node_factory: NodeFactory, roger_partition: str, roger_management: Management, roger_client: Client
) -> None:
    await node_factory.start_many(3)
    p = roger_partition

    done = rogerctl(node_factory, "partition", "start", p, "default=10", "other=5")
    assert done.returncode == 0, done.stderr
    await wait_prefetches(roger_management, queue_name(p, "default"), [10, 10, 10])
    await wait_prefetches(roger_management, queue_name(p, "other"), [5, 5, 5])

    await node_factory.start()
    await wait_prefetches(roger_management, queue_name(p, "default"), [10] * 4)
    await wait_prefetches(roger_management, queue_name(p, "other"), [5] * 4)

    done = rogerctl(node_factory, "partition", "start", p, "default=20", "other=5")
    assert done.returncode == 0, done.stderr
    await wait_prefetches(roger_management, queue_name(p, "default"), [20] * 4)
    await wait_prefetches(roger_management, queue_name(p, "other"), [5] * 4)

    done = rogerctl(node_factory, "partition", "stop", p)
    assert done.returncode == 0, done.stderr
    await wait_prefetches(roger_management, queue_name(p, "default"), [])
    await wait_prefetches(roger_management, queue_name(p, "other"), [])
    # Stopping keeps the queues and whatever they hold.
    assert await roger_management.queue(queue_name(p, "default")) is not None


async def test_queues_are_durable_quorum_queues_declared_by_partition_start(
    roger_client: Client, roger_partition: str, roger_management: Management
) -> None:
    await roger_client.start_partition(roger_partition, {"default": 3})
    for name in (queue_name(roger_partition, "default"), buried_queue_name(roger_partition, "default")):
        info = await roger_management.queue(name)
        assert info is not None, name
        assert info.durable
        assert info.type == "quorum"
    [spec] = await roger_client.partitions()
    assert spec.name == roger_partition and dict(spec.queues) == {"default": 3}


async def test_partition_show_reports_concurrency_ready_and_consumers(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, roger_management: Management
) -> None:
    from tests import jobs

    await roger_client.start_partition(roger_partition, {"default": 4})
    await roger_client.enqueue_many(
        [jobs.Record.create({"ledger": "/dev/null"}) for _ in range(7)], roger_partition
    )
    info = await roger_client.partition(roger_partition)
    [queue] = info.queues
    assert (queue.concurrency, queue.ready, queue.consumers) == (4, 7, 0)

    await node_factory.start(jobs="tests.jobs")

    async def drained() -> bool:
        [q] = (await roger_client.partition(roger_partition)).queues
        return q.ready == 0 and q.consumers == 1

    await eventually(drained, timeout=15)


async def test_a_partition_overwritten_with_garbage_is_ignored_by_running_and_new_nodes_alike(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_namespace: str,
    roger_management: Management,
) -> None:
    p = roger_partition
    queue = queue_name(p, "default")
    await node_factory.start()
    await roger_client.start_partition(p, {"default": 2})
    await wait_prefetches(roger_management, queue, [2])

    etcd = await roger_client.etcd()
    await etcd.put(keys.partition(roger_namespace, p), b"{not json")
    # The running node drops it, as a node that starts now does: one answer for all.
    await wait_prefetches(roger_management, queue, [])
    await node_factory.start()
    doctor = rogerctl(node_factory, "doctor")
    assert doctor.returncode == 5, doctor.stdout + doctor.stderr
    assert p in doctor.stdout
    assert await prefetches(roger_management, queue) == []

    await roger_client.set_partition(p, {"default": 3})
    await wait_prefetches(roger_management, queue, [3, 3])
