"""Limits: memory under a burst, and many partitions at once."""

from __future__ import annotations

import time
from pathlib import Path

from roger_cluster import Client
from roger_cluster.management import Management
from roger_cluster.testing import NodeFactory, NodeProcess, eventually
from roger_cluster.testing.ledger import ended
from tests import jobs


def rss_mib(node: NodeProcess) -> float:
    """The node's resident memory, from /proc."""
    for line in Path(f"/proc/{node.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_burst_of_ten_thousand_queued_jobs_keeps_node_memory_bounded_by_prefetch(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    node = await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 10})
    warm = [jobs.Record.create({"ledger": str(ledger)}) for _ in range(300)]
    await roger_client.enqueue_many(warm, roger_partition)
    await eventually(lambda: len(ended(ledger)) == 300, timeout=30)
    before = rss_mib(node)

    burst = [jobs.Record.create({"ledger": str(ledger), "pad": "x" * 1000}) for _ in range(10_000)]
    await roger_client.enqueue_many(burst, roger_partition)
    peak = before

    def done() -> bool:
        nonlocal peak
        peak = max(peak, rss_mib(node))
        return len(ended(ledger)) == 10_300

    await eventually(done, timeout=120, interval=0.1)
    after = rss_mib(node)
    print(f"node RSS: {before:.1f} MiB before, {peak:.1f} MiB peak, {after:.1f} MiB after 10,000 jobs")
    # 10,000 jobs of ~1 KiB is ~10 MiB of messages: none of it may pile up in the node.
    assert peak - before < 8, (before, peak, after)


async def test_a_hundred_partitions_of_two_queues_start_and_stop_cleanly_on_three_nodes(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, roger_management: Management
) -> None:
    names = [f"{roger_partition}n{i}" for i in range(100)]
    try:
        await node_factory.start_many(3)
        started = time.monotonic()
        for name in names:
            await roger_client.start_partition(name, {"default": 2, "other": 1})

        async def consumed() -> bool:
            queues = [q for q in await roger_management.queues() if q.name.startswith(roger_partition)]
            mains = [q for q in queues if "." not in q.name]
            return len(mains) == 200 and all(q.consumers == 3 for q in mains)

        await eventually(consumed, timeout=120, interval=0.5)
        up = time.monotonic() - started
        for name in names:
            await roger_client.stop_partition(name)

        async def released() -> bool:
            queues = [q for q in await roger_management.queues() if q.name.startswith(roger_partition)]
            return len(queues) == 400 and all(q.consumers == 0 for q in queues)

        await eventually(released, timeout=120, interval=0.5)
        print(f"100 partitions x 2 queues on 3 nodes: all consumed {up:.1f}s after the first start")
        assert all(node.returncode is None for node in node_factory.nodes)
        assert "ERROR" not in "".join(node.log() for node in node_factory.nodes)
    finally:
        await roger_management.delete_queues(roger_partition)
