"""`partition stop --drain`: no new jobs, running ones finish, then the partition goes.

Every live node writes a marker under its lease once it runs no job of the
partition; the client removes the partition when all have. A node that dies
meanwhile leaves the node list and cannot hold the drain up.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from roger_cluster import Client
from roger_cluster.cluster import keys
from roger_cluster.management import Management
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.consumers import ready, start_consuming, wait_consumers
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.rogerctl import rogerctl, start_rogerctl
from tests import jobs


async def finish(process: asyncio.subprocess.Process, timeout: float) -> tuple[int, str, str]:
    """Wait for a background rogerctl; its exit code, stdout and stderr."""
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def listed(factory: NodeFactory) -> list[dict[str, Any]]:
    done = rogerctl(factory, "--json", "partition", "list")
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


async def test_drain_waits_for_running_jobs_then_removes_the_partition_and_list_shows_draining_meanwhile(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p, queue = roger_partition, queue_name(roger_partition, "default")
    a, b = await start_consuming(
        node_factory, roger_client, roger_management, p, {"default": 1}, nodes=2, jobs="tests.jobs"
    )
    running = [jobs.Record.create({"ledger": str(ledger), "sleep": 4}) for _ in range(2)]
    await roger_client.enqueue_many(running, p)
    await eventually(lambda: len(events(ledger, "start")) == 2, timeout=15)
    queued = [jobs.Record.create({"ledger": str(ledger)}) for _ in range(3)]
    await roger_client.enqueue_many(queued, p)

    drain = await start_rogerctl(node_factory, "partition", "stop", p, "--drain", "--timeout", "60")
    await eventually(lambda: [s["draining"] for s in listed(node_factory)] == [True], timeout=10)
    human = rogerctl(node_factory, "partition", "list").stdout.splitlines()
    assert human[1].split()[:2] == [p, "draining"]
    await wait_consumers(roger_management, queue, [], timeout=10)

    code, out, err = await finish(drain, timeout=30)
    finished = time.time()
    assert code == 0, err
    assert f"partition {p} drained and stopped" in out
    assert f"draining {p}: " in err
    ends = events(ledger, "end")
    assert {e["id"] for e in ends} == {j.id for j in running}
    assert finished >= max(e["t"] for e in ends)
    assert events(ledger, "stopped") == []
    assert listed(node_factory) == []
    # Jobs never started stay queued: starting the partition again runs them.
    assert await ready(roger_client, queue) == 3
    markers, _ = await (await roger_client.etcd()).get_prefix(keys.drained_prefix(roger_client.namespace, p))
    assert markers == []
    await roger_client.start_partition(p, {"default": 1})
    await eventually(lambda: len(ended(ledger)) == 5, timeout=15)


async def test_a_node_that_dies_during_a_drain_does_not_block_it(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p, queue = roger_partition, queue_name(roger_partition, "default")
    a, b = await start_consuming(
        node_factory, roger_client, roger_management, p, {"default": 1}, nodes=2, jobs="tests.jobs"
    )
    job = jobs.Record.create({"ledger": str(ledger), "sleep": 120})
    await roger_client.enqueue(job, p)
    [start] = await eventually(lambda: events(ledger, "start", job.id), timeout=15)
    victim = a if start["node"] == a.name else b

    drain = await start_rogerctl(node_factory, "partition", "stop", p, "--drain", "--timeout", "60")
    await eventually(lambda: [s["draining"] for s in listed(node_factory)] == [True], timeout=10)
    victim.kill()
    # The node lease TTL is 3 s in tests.
    code, out, err = await finish(drain, timeout=3 + 15)
    assert code == 0, err
    assert f"waiting for {victim.name}" in err
    assert listed(node_factory) == []
    # The killed node's job went back to the queue, which keeps it.
    await eventually(lambda: ready(roger_client, queue), timeout=10)
    assert await ready(roger_client, queue) == 1
    assert ended(ledger) == {}


async def test_a_drain_that_times_out_leaves_the_partition_draining_and_start_ends_it(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p, queue = roger_partition, queue_name(roger_partition, "default")
    node = await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(p, {"default": 1})
    job = jobs.Record.create({"ledger": str(ledger), "sleep": 120})
    await roger_client.enqueue(job, p)
    await eventually(lambda: events(ledger, "start", job.id), timeout=15)

    done = rogerctl(node_factory, "partition", "stop", p, "--drain", "--timeout", "1")
    assert done.returncode == 1
    assert "still draining after 1s" in done.stderr and node.name in done.stderr
    assert [s["draining"] for s in listed(node_factory)] == [True]

    restarted = rogerctl(node_factory, "partition", "start", p, "default=1")
    assert restarted.returncode == 0, restarted.stderr
    assert [s["draining"] for s in listed(node_factory)] == [False]
    await wait_consumers(roger_management, queue, [(node.name, 1)])
    assert events(ledger, "stopped") == []


async def test_draining_a_partition_no_node_consumes_removes_it_at_once(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    await node_factory.start("other", jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 1}, nodes=["elsewhere"])
    seen: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    await roger_client.stop_partition(
        roger_partition, drain=True, timeout=15, on_progress=lambda p: seen.append((p.drained, p.pending))
    )
    assert await roger_client.partitions() == []
    assert seen[-1] == (("other",), ())
