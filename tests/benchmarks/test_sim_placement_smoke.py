"""sim_placement.py at a tiny size: it runs against its own etcd, every partition lands on
exactly K nodes in every phase, and every figure is reported. Not a speed test."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


async def test_the_placement_simulation_puts_every_partition_on_k_nodes_at_a_tiny_size() -> None:
    argv = [
        sys.executable, "-m", "benchmarks.sim_placement", "--json",
        "--nodes", "12", "--partitions", "150", "--replicas", "3", "--join", "2",
        "--ttl", "2", "--idle", "0.5", "--channels", "2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run
    done = await asyncio.to_thread(
        run, argv, capture_output=True, text=True, timeout=120, check=False, cwd=REPO, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    values = {r["figure"]: r["value"] for r in json.loads(done.stdout)}
    assert values["partitions not on exactly 3 nodes, 12 nodes"] == 0
    assert values["partitions not on exactly 3 nodes, after one death (11 nodes)"] == 0
    assert values["partitions not on exactly 3 nodes, after 2 joined (13 nodes)"] == 0
    assert values["partitions per node, 12 nodes (mean)"] == 150 * 3 / 12
    # A death moves only the dead node's assignments: each of its partitions once.
    assert values["assignments moved, one node died"] == values["partitions that moved, one node died"]
    assert 0 < values["assignments moved, 2 nodes joined"] <= 150 * 3
    assert values["distinct views computed (each shared by the nodes that held it)"] >= 3
    assert "etcd LeaseKeepAlive rate, idle for 0.5s (12 nodes)" in values
