"""The demo both `scripts/demo` paths run (`python -m roger_cluster.cli.demo`):
against a running cluster, it starts the partition, runs its jobs and exits
once they ran, printing the lines the quickstart shows."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from roger_cluster import Client
from roger_cluster.testing import NodeFactory


async def test_the_demo_runs_its_jobs_on_a_running_cluster_and_exits(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    await node_factory.start_many(2)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "roger_cluster.cli.demo", "--partition", roger_partition],
        env=node_factory.env("demo"),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"partition {roger_partition} started: default=10 other=5"
    assert lines[1] == "enqueued 15 demo jobs"
    assert lines[2] == "15 demo jobs ran on 2 node(s): node1, node2"
    ran = sum(node.log().count("demo job") for node in node_factory.nodes)
    assert ran == 15
    info = await roger_client.partition(roger_partition)
    assert [q.ready for q in info.queues] == [0, 0]


def test_the_demo_without_a_cluster_exits_1_naming_the_fix(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "roger_cluster.cli.demo", "--etcd", "127.0.0.1:1", "--partition"]
        + [roger_partition],
        env=node_factory.env("demo"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("demo: cannot reach") and "Point --" in done.stderr
