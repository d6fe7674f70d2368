"""The benchmark suite at a tiny size: it runs, counts every job, and leaves nothing behind.

Not a speed test: no figure is judged here (the table's PASS/FAIL is the suite's business). It
runs the one command, `python -m benchmarks` (what `benchmarks/run` executes), against the test
session's RabbitMQ and etcd, peers included (their venv is made from PyPI on first use, about
20 s), and checks that every phase produced its figures, that every drain counted each of its
jobs exactly once (the suite's `ok`), and that no queue and no process of the run is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from roger_cluster.management import Management
from roger_cluster.testing.servers import EtcdEndpoint, RabbitEndpoint

REPO = Path(__file__).resolve().parents[2]
RUN_ENV = "ROGER_BENCH_RUN"  # benchmarks/suite/rig.py: every process of the run carries it
TIMEOUT = 170.0


def processes_of(run: str) -> list[str]:
    """Command lines of live processes whose environment carries this run's marker."""
    marker = f"{RUN_ENV}={run}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def run_suite(rabbitmq: RabbitEndpoint, etcd: EtcdEndpoint, run: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable, "-m", "benchmarks", "--json", "--quick", "--jobs", "200", "--single", "50",
        "--samples", "20", "--starts", "3", "--kills", "1", "--no-growth",
        "--amqp-url", rabbitmq.amqp_url, "--etcd", etcd.endpoints,
    ]  # fmt: skip
    env = dict(os.environ) | {RUN_ENV: run}
    return subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def figures(report: dict[str, Any], section: str) -> dict[str, Any]:
    return {row["figure"]: row for row in report["rows"] if row["section"] == section}


@pytest.mark.timeout(TIMEOUT + 20)
async def test_the_suite_counts_every_job_and_leaves_no_queue_or_process(
    roger_rabbitmq: RabbitEndpoint, roger_etcd: EtcdEndpoint, roger_management: Management
) -> None:
    before = {q.name for q in await roger_management.queues()}
    run = uuid.uuid4().hex

    done = await asyncio.to_thread(run_suite, roger_rabbitmq, roger_etcd, run)

    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["ok"], report["errors"]
    assert report["errors"] == []
    ceiling, peers, ours = (figures(report, s) for s in ("Ceiling", "Peers", "roger_cluster"))
    assert all(row["value"] for row in ceiling.values()) and len(ceiling) == 7
    drains = [f for f in ours if f.startswith("drain, ")]
    assert len(drains) == 2 + 3 * 2 * 2 - 1  # headline classic and quorum; the matrix but its headline
    assert all(ours[f]["value"] > 0 for f in drains)
    for peer in ("Celery, solo pool, acks_late, 1 process", "Dramatiq, 1 process"):
        assert "200 of 200 counted" in peers[f"{peer}: drain"]["note"]
    assert ours["  / fastest peer drain"]["value"] is not None
    for figure in (
        "enqueue -> perform starts, p99",
        "partition start -> consuming on every node, p99",
        "SIGKILL of a node -> its job starts on another, max",
        "delayed job: due -> perform starts, p99",
        "enqueue_many delayed, confirms, window 1000 (quorum)",
        "  beside enqueue_many plain (quorum)",
        "SyncClient.enqueue from 8 threads, confirms (quorum)",
        "  beside enqueue_many, window 1000 (quorum)",
        "  / enqueue_many",
        "  beside Client.enqueue from 8 tasks (quorum)",
        "  beside bare aio-pika, 8 in flight (quorum)",
        "  / Client.enqueue from 8 tasks",
    ):
        assert ours[figure]["value"] > 0, figure
    assert ours["delayed job: due -> perform starts, p50"]["note"].endswith("one every 50 ms")
    assert "machine" in report and report["machine"]["rabbitmq"] != "unknown"

    assert processes_of(run) == []
    left = {q.name for q in await roger_management.queues()} - before
    assert left == set(), left
