"""Delayed jobs on real nodes: they wait in the delay levels, unacked by nobody, and run when due."""

from __future__ import annotations

import time
from pathlib import Path

from roger_cluster import Client
from roger_cluster.management import Management
from roger_cluster.testing import NodeFactory, eventually, start_consuming
from roger_cluster.testing.ledger import events
from tests import jobs


async def test_a_delayed_job_runs_no_earlier_than_its_due_time_and_knows_it(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_partition: str,
    ledger: Path,
) -> None:
    await start_consuming(
        node_factory, roger_client, roger_management, roger_partition, {"default": 2}, jobs="tests.jobs"
    )
    before = time.time()
    job = jobs.Punctual.create({"ledger": str(ledger)})
    await roger_client.enqueue(job, roger_partition, delay=1.5)
    await eventually(lambda: events(ledger, "start"), timeout=15)
    [start] = events(ledger, "start")
    assert before + 1.5 <= start["due"] <= time.time()
    assert start["due"] <= start["t"] < start["due"] + 1.0
