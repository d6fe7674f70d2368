"""bench_growth.py at a tiny size: it runs, converges, reports every figure, cleans up.

A smoke test of the benchmark, not of speed: no figure is compared with a target.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from roger_cluster.management import Management
from roger_cluster.testing.servers import RabbitEndpoint

BENCH = Path(__file__).parents[2] / "benchmarks" / "bench_growth.py"

# Every figure of one case, and of the per-partition slopes between two sizes.
CASE_FIGURES = [
    "declaring the queues before the puts (client), {where}",
    "convergence, {where}",
    "node CPU to converge, {where} (per node)",
    "node RSS before the partitions, {where} (max)",
    "node RSS converged, {where} (max)",
    "one more partition start, {where} (median)",
    "node CPU per one more partition start, {where} (median, per node)",
    "etcd requests by the nodes per partition start, {where} (per node)",
    "AMQP connections per node, {where}",
    "AMQP channels per node, {where}",
    "consumers per node, {where}",
    "etcd watchers, {where} (all nodes)",
    "etcd watch streams, {where} (all nodes)",
    "etcd keys in the namespace, {where}",
    "etcd leases in the namespace, {where}",
    "broker RSS growth, {where}",
    "broker memory per queue (queue processes), {where}",
    "broker memory per channel (connections and channels), {where}",
    "etcd RSS, {where}",
]
SLOPE_FIGURES = [
    "node RSS per partition ({span})",
    "channels per partition per node ({span})",
    "consumers per partition per node ({span})",
    "etcd watchers per partition ({span})",
    "etcd keys per partition ({span})",
    "broker RSS per partition ({span})",
    "convergence time per partition ({span})",
]


async def test_bench_growth_converges_reports_every_figure_and_leaves_no_queue_at_a_tiny_size(
    roger_rabbitmq: RabbitEndpoint, roger_management: Management
) -> None:
    argv = [
        sys.executable, str(BENCH), "--json", "--queue-type", "classic",
        "--sizes", "2,5", "--clusters", "2", "--nodes", "1", "--scale-partitions", "5", "--one-more", "2",
        "--big", "0",
        "--amqp-url", roger_rabbitmq.amqp_url, "--management-url", roger_rabbitmq.management_url,
    ]  # fmt: skip
    run = subprocess.run
    done = await asyncio.to_thread(run, argv, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)
    assert all(r["section"] == "growth" and isinstance(r["value"], int | float) for r in rows)
    values = {r["figure"]: r["value"] for r in rows}
    expected = [
        f.format(where=where)
        for where in ("2 partitions, 2 nodes", "5 partitions, 2 nodes", "5 partitions, 1 node")
        for f in CASE_FIGURES
    ] + [f.format(span="2 to 5 partitions, 2 nodes") for f in SLOPE_FIGURES]
    assert sorted(values) == sorted(expected)
    assert 0 < values["convergence, 5 partitions, 2 nodes"] < 60
    assert values["consumers per node, 5 partitions, 2 nodes"] == 10  # 5 partitions x 2 queues
    assert values["AMQP connections per node, 5 partitions, 2 nodes"] == 1
    assert values["etcd leases in the namespace, 5 partitions, 2 nodes"] == 2
    assert values["etcd watchers per partition (2 to 5 partitions, 2 nodes)"] == 0
    # Consumers share channels, 8 a channel: 4 queues on 1 channel, 10 on 2.
    assert values["channels per partition per node (2 to 5 partitions, 2 nodes)"] == round(1 / 3, 3)
    leftovers = [q.name for q in await roger_management.queues() if q.name.startswith("grow")]
    assert leftovers == []
