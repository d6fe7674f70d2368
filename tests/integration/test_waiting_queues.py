"""Execution keys leave nothing behind: idle waiting queues and their counts go."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from roger_cluster import Client
from roger_cluster.cluster import keys
from roger_cluster.management import Management
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended
from tests import jobs

KEYS = 1000


@pytest.mark.timeout(400)
async def test_the_waiting_queues_of_a_thousand_idle_keys_are_deleted_and_come_back_when_needed(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    p = roger_partition
    waiting_prefix = f"{p}-execution-waiting-"
    await node_factory.start_many(2, jobs="tests.jobs", ROGER_WAITING_QUEUE_IDLE="2")
    await roger_client.start_partition(p, {"default": 20})
    batch = [jobs.Serial.create({"ledger": str(ledger), "key": f"s{i}"}) for i in range(KEYS)]
    await roger_client.enqueue_many(batch, p)

    def all_ran_once() -> bool:  # on a timeout, says which keys are behind
        seen = ended(ledger)
        behind = [(j.args["key"], seen[j.id]) for j in batch if seen[j.id] != 1]
        assert not behind, f"{len(behind)} jobs not ended exactly once, (key, ends): {behind[:10]}"
        return True

    await eventually(all_ran_once, timeout=240, interval=0.5)

    async def waiting_queues() -> list[str]:
        return [q.name for q in await roger_management.queues() if q.name.startswith(waiting_prefix)]

    async def counts() -> int:
        etcd = await roger_client.etcd()
        found, _ = await etcd.get_prefix(keys.exec_waiting_prefix(roger_client.namespace))
        return len(found)

    async def all_gone() -> bool:
        return await waiting_queues() == [] and await counts() == 0

    await eventually(all_gone, timeout=120, interval=1)

    # Keys used again, some while their queues are being swept: nothing is lost.
    again = []
    for round_ in range(4):
        wave = [jobs.Serial.create({"ledger": str(ledger), "key": f"s{i}"}) for i in range(round_, 60, 4)]
        await roger_client.enqueue_many(wave, p)
        again += wave
        await asyncio.sleep(1.5)  # lands around the 2 s idle time of the previous wave's keys
    await eventually(lambda: all(ended(ledger)[j.id] == 1 for j in again), timeout=60, interval=0.5)
    await eventually(all_gone, timeout=60, interval=1)
    assert await roger_client.buried(p, "default") == []
