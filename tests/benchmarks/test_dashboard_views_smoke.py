"""bench_dashboard_views.py at a tiny size: it runs, prints every figure, deletes its stream.

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

ROOT = Path(__file__).parents[2]


async def test_bench_dashboard_views_reports_every_figure_and_leaves_no_stream(
    roger_rabbitmq: RabbitEndpoint, roger_management: Management
) -> None:
    argv = [sys.executable, "-m", "benchmarks.bench_dashboard_views", "--json", "--events", "1000",
            "--rounds", "1", "--amqp-url", roger_rabbitmq.amqp_url]  # fmt: skip

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(r["section"] == "dashboard views" and r["value"] > 0 for r in rows), rows
    assert [r["figure"].split(",")[0] for r in rows] == [
        "history stream: events over the last 15 min",
        "charts",
        "charts",
        "job page",
        "history table (failed",
    ]
    leftovers = [q.name for q in await roger_management.queues() if q.name.startswith("roger.benchdash-")]
    assert leftovers == []
