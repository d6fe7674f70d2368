"""The jobs of an execution key keep their order when the node running one of them
stops: shut down with the job still running (its delivery given back), or killed.

RabbitMQ 3.10 quorum queues without a delivery limit put a nacked message at the
back of the queue; a message whose channel closes goes back to the front. These
tests hold the documented order (docs/keys.md) on the broker the suite runs.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from roger_cluster import Client
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import events
from tests import jobs


@pytest.mark.parametrize("stop", ["shutdown", "kill"])
async def test_an_interrupted_keyed_job_runs_again_before_the_jobs_behind_it(
    stop: str, node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    p = roger_partition
    await roger_client.start_partition(p, {"default": 1})
    holder = await node_factory.start("holder", ["--shutdown-timeout", "1"], jobs="tests.jobs")
    slow = {"ledger": str(ledger), "key": "k"}
    serial = [jobs.SerialSlowOnce.create({**slow, "seq": i, "sleep": 60 if i == 0 else 0}) for i in range(4)]
    for job in serial:
        await roger_client.enqueue(job, p)
    await eventually(lambda: [e["seq"] for e in events(ledger, "start")] == [0], timeout=15)

    if stop == "shutdown":  # the job outlives the shutdown timeout: stopped, its delivery given back
        holder.signal(signal.SIGTERM)
        assert await holder.wait_exit(timeout=20) == 0, holder.log()
    else:
        holder.kill()
        await holder.wait_exit(timeout=10)
    await node_factory.start("next", jobs="tests.jobs")

    def seqs() -> list[int]:
        return [e["seq"] for e in events(ledger, "end")]

    await eventually(lambda: len(seqs()) == 4, timeout=45, message=f"(ended so far: {seqs()})")
    assert seqs() == [0, 1, 2, 3], "the interrupted job did not run first when the key moved on"
