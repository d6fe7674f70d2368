"""JSON logs: one object per line, the node on every record, the job on every job record."""

from __future__ import annotations

import json
from pathlib import Path

from roger_cluster import Client
from roger_cluster.testing import NodeFactory, eventually
from tests import jobs


async def test_json_logs_carry_the_node_and_every_job_record_carries_the_job(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, tmp_path: Path
) -> None:
    node = await node_factory.start(jobs="tests.jobs", ROGER_LOG_FORMAT="json")
    await roger_client.start_partition(roger_partition, {"default": 1})
    job = jobs.Fails.create({"ledger": str(tmp_path / "ledger")})
    await roger_client.enqueue(job, roger_partition)
    await eventually(lambda: "failed for good" in node.log(), timeout=15)

    records = [json.loads(line) for line in node.log().splitlines() if line.strip()]
    assert records and all(r["node"] == node.name and r["level"] and r["time"] for r in records)
    [failure] = [r for r in records if "failed for good" in r["message"]]
    assert failure["job_id"] == job.id
    assert failure["job_class"] == "tests.jobs:Fails"
    assert (failure["partition"], failure["queue"]) == (roger_partition, "default")
    assert "RuntimeError: this job always fails" in failure["traceback"]
