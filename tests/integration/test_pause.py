"""Pause, resume and purge of one queue, cluster-wide, on real nodes.

A pause is a key in etcd every node follows: each node cancels its consumer
of the queue, running jobs finish, the messages stay in RabbitMQ, and a node
started while the queue is paused never consumes it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from roger_cluster import Client
from roger_cluster.management import Management
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.consumers import (
    consumers,
    consumers_by_node,
    ready,
    start_consuming,
    wait_consumers,
)
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.rogerctl import rogerctl
from tests import jobs


def rogerctl_without_terminal(factory: NodeFactory, *args: str) -> subprocess.CompletedProcess[str]:
    """rogerctl with stdin that is not a terminal, as in a script."""
    return rogerctl(factory, *args, stdin=subprocess.DEVNULL)


async def test_pause_stops_new_starts_on_every_node_within_a_second_while_running_jobs_finish(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p, queue = roger_partition, queue_name(roger_partition, "default")
    nodes = await start_consuming(
        node_factory, roger_client, roger_management, p, {"default": 2}, nodes=3, jobs="tests.jobs"
    )
    batch = [jobs.Record.create({"ledger": str(ledger), "sleep": 0.3}) for _ in range(150)]
    await roger_client.enqueue_many(batch, p)
    names = {n.name for n in nodes}
    await eventually(lambda: {e["node"] for e in events(ledger, "start")} == names, timeout=15)

    asked = time.time()
    await roger_client.pause_queue(p, "default")
    await wait_consumers(roger_management, queue, [], timeout=10)

    def all_started_ended() -> list[str]:
        started = [e["id"] for e in events(ledger, "start")]
        return started if set(started) == set(ended(ledger)) else []

    started = await eventually(all_started_ended, timeout=10)
    late = [e for e in events(ledger, "start") if e["t"] > asked + 1.0]
    assert late == [], f"{len(late)} job(s) started more than 1 s after the pause"
    assert events(ledger, "stopped") == []
    # The queue keeps what was not started.
    assert await ready(roger_client, queue) == len(batch) - len(started) > 0

    resumed = rogerctl(node_factory, "queue", "resume", p, "default")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    await wait_consumers(roger_management, queue, [(n.name, 2) for n in nodes])
    await eventually(lambda: len(ended(ledger)) == len(batch), timeout=60)
    assert set(ended(ledger).values()) == {1}
    assert await ready(roger_client, queue) == 0


async def test_a_node_restarted_while_a_queue_is_paused_does_not_consume_it(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p = roger_partition
    node = await node_factory.start("solo", jobs="tests.jobs")
    await roger_client.start_partition(p, {"default": 2, "other": 1})
    paused = rogerctl(node_factory, "queue", "pause", p, "default")
    assert paused.returncode == 0, paused.stderr
    assert "paused" in paused.stdout
    await wait_consumers(roger_management, queue_name(p, "default"), [])
    await wait_consumers(roger_management, queue_name(p, "other"), [("solo", 1)])
    batch = [jobs.Record.create({"ledger": str(ledger)}) for _ in range(5)]
    await roger_client.enqueue_many(batch, p)

    node.signal(signal.SIGTERM)
    assert await node.wait_exit(20) == 0
    await node_factory.start("solo", jobs="tests.jobs")
    # Started means converged: the node knows the pause before its first consumer.
    await wait_consumers(roger_management, queue_name(p, "other"), [("solo", 1)])
    assert await consumers_by_node(roger_management, queue_name(p, "default")) == []
    assert events(ledger, "start") == []
    assert await ready(roger_client, queue_name(p, "default")) == 5

    listed = json.loads(rogerctl(node_factory, "--json", "partition", "list").stdout)
    assert [(s["name"], s["paused"]) for s in listed] == [(p, ["default"])]
    human = rogerctl(node_factory, "partition", "list").stdout
    assert "default=2(paused)" in human

    assert await roger_client.resume_queue(p, "default")
    await eventually(lambda: len(ended(ledger)) == 5, timeout=15)
    assert await roger_client.paused_queues() == frozenset()


async def test_purge_empties_a_queue_and_asks_for_yes_when_not_interactive(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p, queue = roger_partition, queue_name(roger_partition, "default")
    await roger_client.start_partition(p, {"default": 1})
    await roger_client.enqueue_many([jobs.Record.create({"ledger": "/dev/null"}) for _ in range(5)], p)

    refused = rogerctl_without_terminal(node_factory, "queue", "purge", p, "default")
    assert refused.returncode == 2
    assert "--yes" in refused.stderr and "not a terminal" in refused.stderr
    assert await ready(roger_client, queue) == 5

    purged = rogerctl_without_terminal(node_factory, "--json", "queue", "purge", p, "default", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["purged"] == 5
    assert await ready(roger_client, queue) == 0
    assert await roger_client.purge_queue(p, "default") == 0


async def test_pausing_an_unknown_queue_exits_4_and_resuming_an_unpaused_one_says_so(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    missing = rogerctl(node_factory, "queue", "pause", p, "default")
    assert missing.returncode == 4 and p in missing.stderr
    await roger_client.start_partition(p, {"default": 1})
    no_queue = rogerctl(node_factory, "queue", "pause", p, "nope")
    assert no_queue.returncode == 4 and "no queue 'nope'" in no_queue.stderr
    bad = rogerctl(node_factory, "queue", "pause", p, "a-b")
    assert bad.returncode == 2
    gone = rogerctl_without_terminal(node_factory, "queue", "purge", p, "nope", "--yes")
    assert gone.returncode == 4
    not_paused = rogerctl(node_factory, "--json", "queue", "resume", p, "default")
    assert not_paused.returncode == 0, not_paused.stderr
    assert json.loads(not_paused.stdout)["was_paused"] is False
    assert await roger_client.paused_queues() == frozenset()


async def test_sigterm_bounds_the_jobs_of_a_paused_queue_by_the_shutdown_timeout(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p, queue = roger_partition, queue_name(roger_partition, "default")
    node = await node_factory.start(jobs="tests.jobs", ROGER_SHUTDOWN_TIMEOUT="1")
    await roger_client.start_partition(p, {"default": 1})
    job = jobs.Record.create({"ledger": str(ledger), "sleep": 120})
    await roger_client.enqueue(job, p)
    await eventually(lambda: events(ledger, "start", job.id), timeout=15)
    await roger_client.pause_queue(p, "default")
    await wait_consumers(roger_management, queue, [])

    # Paused, the job keeps running; a shutdown still stops it after its timeout.
    node.signal(signal.SIGTERM)
    assert await node.wait_exit(1 + 10) == 0
    assert events(ledger, "stopped", job.id)
    assert await ready(roger_client, queue) == 1


async def test_partition_show_says_paused_and_names_the_nodes_that_consume_it_on_resume(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    await node_factory.start("gpu1", jobs="tests.jobs", ROGER_LABELS="gpu")
    await node_factory.start("gpu2", jobs="tests.jobs", ROGER_LABELS="gpu")
    await node_factory.start("plain", jobs="tests.jobs")
    p = roger_partition
    assert rogerctl(node_factory, "partition", "start", p, "default=2", "--labels", "gpu").returncode == 0
    await eventually(lambda: consumers(roger_client, queue_name(p, "default"), 2), timeout=15)
    done = rogerctl(node_factory, "queue", "pause", p, "default")
    assert done.returncode == 0, done.stderr
    await eventually(lambda: consumers(roger_client, queue_name(p, "default"), 0), timeout=15)

    def shown() -> bool:
        [row, placement] = rogerctl(node_factory, "partition", "show", p).stdout.splitlines()[1:]
        assert placement == "placement: every eligible node (2 of 3 live): gpu1, gpu2"
        # The console keeps a cancelled consumer's record for a stats interval or two.
        assert row.split()[3:] == ["yes", "0", "0", "0", "0", "paused", "(gpu1,gpu2", "on", "resume)"], row
        return True

    await eventually(shown, timeout=20, interval=1.0)
    [queue] = json.loads(rogerctl(node_factory, "--json", "partition", "show", p).stdout)
    assert (queue["paused"], queue["placed_on"], queue["consumer_nodes"]) == (True, ["gpu1", "gpu2"], [])
