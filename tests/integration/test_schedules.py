"""Recurring schedules on real nodes: each tick's job runs exactly once.

Through node deaths (SIGKILL), a node joining, a claimer dying before it
published, a second copy of a tick, and the whole cluster being down.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

from roger_cluster import Client, Schedule
from roger_cluster.management import Management
from roger_cluster.schedules import tick_job_id
from roger_cluster.testing import NodeFactory, eventually, start_consuming
from roger_cluster.testing.ledger import events

TICKED = "tests.jobs:Ticked"


def ticks_run(ledger: Path, name: str = "beat") -> Counter[int]:
    """How many times the job of each tick ran to its end."""
    return Counter(int(e["tick"]) for e in events(ledger, "end") if e.get("schedule") == name)


async def test_a_schedule_fires_every_tick_once_while_a_node_is_killed_and_another_joins(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_partition: str,
    ledger: Path,
) -> None:
    nodes = await start_consuming(
        node_factory, roger_client, roger_management, roger_partition, {"default": 4},
        nodes=3, jobs="tests.jobs",
    )  # fmt: skip
    stored = await roger_client.put_schedule(
        Schedule("beat", roger_partition, TICKED, {"ledger": str(ledger)}, every=1)
    )
    start = math.ceil(stored.created_at)

    async def ran_until(t: float) -> None:
        await eventually(lambda: max(ticks_run(ledger), default=0) >= t, timeout=t - time.time() + 15)

    await ran_until(start + 5)
    nodes[0].kill()  # its lease (3 s) keeps it "live" a while: ranks after it take its ticks
    await ran_until(time.time() + 10)
    await node_factory.start(jobs="tests.jobs")
    await ran_until(time.time() + 10)
    await roger_client.pause_schedule("beat")
    end = int(time.time()) - 1

    def all_ran() -> bool:
        run = ticks_run(ledger)
        return all(run[t] >= 1 for t in range(start, end + 1))

    await eventually(all_ran, timeout=20, message="every tick of the window ran")
    run = ticks_run(ledger)
    assert [t for t in range(start, end + 1) if run[t] != 1] == [], run
    assert all(t >= start for t in run)
    ids = Counter(e["id"] for e in events(ledger, "end"))
    assert all(n == 1 for n in ids.values())
    assert {e["id"] for e in events(ledger, "end")} == {tick_job_id("beat", t) for t in run}
    info = await roger_client.get_schedule("beat")
    assert info.paused and info.fired >= end - start + 1
