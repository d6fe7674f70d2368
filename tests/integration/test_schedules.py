"""Recurring schedules on real nodes: each tick's job runs exactly once.

Through node deaths (SIGKILL), a node joining, a claimer dying before it
published, a second copy of a tick, and the whole cluster being down.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from roger_cluster import Client, JobRegistry, Schedule, scheduler
from roger_cluster.cluster import keys
from roger_cluster.cluster.schedules import ScheduleState, TickRecord
from roger_cluster.codec import JobMessage
from roger_cluster.management import Management
from roger_cluster.names import queue_name, release_queue_name
from roger_cluster.scheduler import Scheduler
from roger_cluster.schedules import LAG, tick_job_id, tick_label
from roger_cluster.testing import NodeFactory, NodeProcess, eventually, start_consuming
from roger_cluster.testing.ledger import events
from roger_cluster.testing.servers import EtcdServer, free_ports

TICKED = "tests.jobs:Ticked"
LEASE_TTL = 3  # the test nodes' (NodeFactory: ROGER_LEASE_TTL)


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
    # A tick its claimer took down with it is fired again once the claimer's lease is gone.
    late = max(e["t"] - e["tick"] for e in events(ledger, "start"))
    assert late < LEASE_TTL + 3, late
    info = await roger_client.get_schedule("beat")
    assert info.paused and info.fired >= end - start + 1


async def write(client: Client, key: str, value: bytes) -> None:
    etcd = await client.etcd()
    await etcd.put(key, value)


async def metric(port: int, name: str, schedule: str) -> float:
    """One schedule's sample of a node's counter, from its /metrics."""

    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text

    found = re.search(rf'^{name}\{{schedule="{schedule}"\}} (\S+)$', await asyncio.to_thread(fetch), re.M)
    return float(found.group(1)) if found else 0.0


def dropped(nodes: list[NodeProcess]) -> int:
    """How many copies of ticks the nodes dropped unrun (they log each)."""
    return sum(n.log().count("dropping job") for n in nodes)


async def test_a_tick_claimed_by_a_node_that_died_before_publishing_is_fired_once_by_another(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_partition: str,
    ledger: Path,
) -> None:
    nodes = await start_consuming(
        node_factory, roger_client, roger_management, roger_partition, {"default": 2},
        nodes=2, jobs="tests.jobs",
    )  # fmt: skip
    beat = Schedule("beat", roger_partition, TICKED, {"ledger": str(ledger)}, every=60, paused=True)
    await roger_client.put_schedule(beat)
    tick = (int(time.time()) // 60 - 1) * 60  # a tick a dead node claimed, and died
    ns = roger_client.namespace
    await write(roger_client, keys.schedule_state(ns, "beat"), ScheduleState(tick, "ghost").encode())
    record = TickRecord("never-published", "ghost", "gone")
    await write(roger_client, keys.schedule_tick(ns, "beat", tick_label(tick)), record.encode())

    await eventually(lambda: ticks_run(ledger)[tick] == 1, timeout=15, message="the dead node's tick ran")
    [end] = events(ledger, "end")
    assert end["id"] == tick_job_id("beat", tick)

    async def released() -> bool:
        etcd = await roger_client.etcd()
        return await etcd.get(keys.schedule_tick(ns, "beat", tick_label(tick))) is None

    await eventually(released, timeout=10, message="the tick record is deleted once its job finished")
    # The copy the dead node may have published after all arrives late: it never runs.
    late = JobMessage(
        tick_job_id("beat", tick), TICKED, {"ledger": str(ledger)}, "default",
        scheduled_at=tick, schedule="beat", firing="never-published",
    )  # fmt: skip
    await roger_client.enqueue_message(late, roger_partition)
    await eventually(lambda: dropped(nodes) == 1, timeout=15)
    assert ticks_run(ledger) == Counter({tick: 1})


async def test_of_two_copies_of_a_tick_only_the_one_its_record_names_runs(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_partition: str,
    ledger: Path,
) -> None:
    (port,) = free_ports(1)
    node_factory.extra_env["ROGER_HTTP"] = f"127.0.0.1:{port}"
    [node] = await start_consuming(
        node_factory, roger_client, roger_management, roger_partition, {"default": 2}, jobs="tests.jobs"
    )
    beat = Schedule("beat", roger_partition, TICKED, {"ledger": str(ledger)}, every=60, paused=True)
    await roger_client.put_schedule(beat)
    tick = (int(time.time()) // 60 - 1) * 60
    [live] = [n for n in await roger_client.nodes() if n.name == node.name]
    ns = roger_client.namespace
    record = TickRecord("the-one", live.name, live.instance)  # a live claimer: nobody takes it over
    await write(roger_client, keys.schedule_tick(ns, "beat", tick_label(tick)), record.encode())

    def copy(firing: str) -> JobMessage:
        return JobMessage(
            tick_job_id("beat", tick), TICKED, {"ledger": str(ledger)}, "default",
            scheduled_at=tick, schedule="beat", firing=firing,
        )  # fmt: skip

    await roger_client.enqueue_message(copy("another"), roger_partition)
    await eventually(lambda: dropped([node]) == 1, timeout=15)
    assert ticks_run(ledger) == Counter()
    await roger_client.enqueue_message(copy("the-one"), roger_partition)
    await eventually(lambda: ticks_run(ledger)[tick] == 1, timeout=15)
    await roger_client.enqueue_message(copy("the-one"), roger_partition)  # after it finished
    await eventually(lambda: dropped([node]) == 2, timeout=15)
    assert ticks_run(ledger) == Counter({tick: 1})
    assert await metric(port, "roger_schedule_duplicates_total", "beat") == 2


POLICIES = ("none", "latest", "all")


async def test_ticks_missed_while_the_whole_cluster_was_down_follow_the_catch_up_policy(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_partition: str,
    ledger: Path,
) -> None:
    """One schedule per policy on the one cluster, down and up together."""
    [node] = await start_consuming(
        node_factory, roger_client, roger_management, roger_partition, {"default": 4}, jobs="tests.jobs"
    )
    for policy in POLICIES:
        beat = Schedule(policy, roger_partition, TICKED, {"ledger": str(ledger)}, every=1, catch_up=policy)
        await roger_client.put_schedule(beat)
    await eventually(lambda: all(len(ticks_run(ledger, p)) >= 2 for p in POLICIES), timeout=15)
    node.kill()
    down = time.time()
    # Down longer than the lag a running cluster may have (schedules.LAG): ticks are missed.
    await eventually(lambda: time.time() > down + LAG + 3, timeout=LAG + 10, interval=0.2)
    up = time.time()
    (port,) = free_ports(1)
    await node_factory.start(jobs="tests.jobs", ROGER_HTTP=f"127.0.0.1:{port}")
    await eventually(lambda: all(max(ticks_run(ledger, p)) >= up + 4 for p in POLICIES), timeout=20)
    gap = range(math.ceil(down) + 1, math.floor(up))
    for policy in POLICIES:
        run = ticks_run(ledger, policy)
        assert all(n == 1 for n in run.values()), (policy, run)
        state = await roger_client.get_schedule(policy)
        fired = await metric(port, "roger_schedule_firings_total", policy)
        misfired = await metric(port, "roger_schedule_misfires_total", policy)
        assert fired >= 4, policy
        if policy == "all":
            assert [t for t in gap if run[t] != 1] == []
            assert misfired == 0
        else:
            assert [t for t in gap if run[t]] == [], policy
            assert state.misfired >= len(gap) and misfired >= len(gap), policy


async def test_a_buried_tick_job_put_back_by_an_operator_runs_with_its_tick(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_partition: str,
    ledger: Path,
) -> None:
    [node] = await start_consuming(
        node_factory, roger_client, roger_management, roger_partition, {"default": 1}, jobs="tests.jobs"
    )
    job = "tests.jobs:TickedFailsFirst"
    beat = Schedule("beat", roger_partition, job, {"ledger": str(ledger)}, every=60, paused=True)
    await roger_client.put_schedule(beat)
    tick = (int(time.time()) // 60 - 1) * 60
    [live] = [n for n in await roger_client.nodes() if n.name == node.name]
    ns = roger_client.namespace
    key = keys.schedule_tick(ns, "beat", tick_label(tick))
    await write(roger_client, key, TickRecord("the-one", live.name, live.instance).encode())
    message = JobMessage(
        tick_job_id("beat", tick), job, {"ledger": str(ledger)}, "default",
        scheduled_at=tick, schedule="beat", firing="the-one",
    )  # fmt: skip
    await roger_client.enqueue_message(message, roger_partition)

    async def buried() -> bool:
        return len(await roger_client.buried(roger_partition, "default")) == 1

    await eventually(buried, timeout=15)

    async def released() -> bool:
        etcd = await roger_client.etcd()
        return await etcd.get(key) is None

    await eventually(released, timeout=10, message="a buried tick job's record is released")
    assert await roger_client.retry_buried(roger_partition, "default") == 1
    await eventually(lambda: ticks_run(ledger)[tick] == 1, timeout=15, message="the retried tick job ran")
    assert dropped([node]) == 0


async def test_firings_of_a_class_no_node_can_run_are_buried_with_the_reason(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_partition: str,
) -> None:
    await start_consuming(
        node_factory, roger_client, roger_management, roger_partition, {"default": 1}, jobs="tests.jobs"
    )
    await roger_client.put_schedule(Schedule("ghost", roger_partition, "nowhere.jobs:Gone", {}, every=1))

    async def buried() -> list[str]:
        return [j.reason for j in await roger_client.buried(roger_partition, "default")]

    reasons = await eventually(buried, timeout=15)
    await roger_client.pause_schedule("ghost")
    assert "not allowed" in reasons[0] and "nowhere.jobs:Gone" in reasons[0]


async def test_without_etcd_a_tick_job_waits_for_its_check_and_its_record_is_released_later(
    private_etcd: EtcdServer,
    roger_rabbitmq_url: str,
    roger_namespace: str,
    roger_partition: str,
    roger_management: Management,
    tmp_path: Path,
    ledger: Path,
) -> None:
    factory = NodeFactory(roger_rabbitmq_url, private_etcd.endpoint.endpoints, roger_namespace, tmp_path)
    try:
        async with Client(roger_rabbitmq_url, private_etcd.endpoint.endpoints, roger_namespace) as client:
            await client.start_partition(roger_partition, {"default": 1})
            node = await factory.start(jobs="tests.jobs")
            beat = Schedule("beat", roger_partition, TICKED, {"ledger": str(ledger)}, every=60, paused=True)
            await client.put_schedule(beat)
            tick = (int(time.time()) // 60 - 1) * 60
            [live] = await client.nodes()
            key = keys.schedule_tick(roger_namespace, "beat", tick_label(tick))
            await write(client, key, TickRecord("the-one", live.name, live.instance).encode())
            private_etcd.stop()
            args = {"ledger": str(ledger)}
            message = JobMessage(
                tick_job_id("beat", tick), TICKED, args, "default",
                scheduled_at=tick, schedule="beat", firing="the-one",
            )  # fmt: skip
            await client.enqueue_message(message, roger_partition)  # the hot path: no etcd
            await eventually(lambda: "cannot check that job" in node.log(), timeout=30)
            assert ticks_run(ledger) == Counter()  # never run unchecked
            private_etcd.start()
            await eventually(lambda: ticks_run(ledger)[tick] == 1, timeout=30, message="checked, then run")

            # etcd gone again while the next tick's job runs: its record is released through
            # the release queue once etcd is back.
            nxt = tick + 60
            key = keys.schedule_tick(roger_namespace, "beat", tick_label(nxt))
            await write(client, key, TickRecord("the-one", live.name, live.instance).encode())
            slow = replace(message, id=tick_job_id("beat", nxt), scheduled_at=nxt, args={**args, "sleep": 2})
            await client.enqueue_message(slow, roger_partition)
            await eventually(lambda: events(ledger, "start", slow.id), timeout=15)
            private_etcd.stop()
            await eventually(lambda: "handing it to the release queue" in node.log(), timeout=30)
            assert ticks_run(ledger)[nxt] == 1
            private_etcd.start()

            async def released() -> bool:
                etcd = await client.etcd()
                return await etcd.get(key) is None

            await eventually(
                released, timeout=30, message="the tick's record released from the release queue"
            )
    finally:
        factory.cleanup()
        await roger_management.delete_queues(roger_partition + "-")
        await roger_management.delete_queues(release_queue_name(roger_namespace))


async def test_a_tick_whose_job_is_confirmed_queued_is_not_fired_again_when_its_publisher_dies(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_partition: str,
    ledger: Path,
) -> None:
    [node] = await start_consuming(
        node_factory, roger_client, roger_management, roger_partition, {"default": 1}, jobs="tests.jobs"
    )
    beat = Schedule("beat", roger_partition, TICKED, {"ledger": str(ledger)}, every=60, paused=True)
    await roger_client.put_schedule(beat)
    queued, lost = [(int(time.time()) // 60 - n) * 60 for n in (2, 1)]
    ns = roger_client.namespace
    # A dead node claimed two ticks: one's job is in RabbitMQ (published), the other's never got there.
    published = TickRecord("in-the-queue", "ghost", "gone", published=True)
    await write(roger_client, keys.schedule_tick(ns, "beat", tick_label(queued)), published.encode())
    unpublished = TickRecord("lost", "ghost", "gone")
    await write(roger_client, keys.schedule_tick(ns, "beat", tick_label(lost)), unpublished.encode())
    await eventually(lambda: ticks_run(ledger)[lost] == 1, timeout=15, message="the lost tick is fired again")
    etcd = await roger_client.etcd()
    kv = await etcd.get(keys.schedule_tick(ns, "beat", tick_label(queued)))
    assert kv is not None and TickRecord.decode(kv.value) == published
    assert ticks_run(ledger)[queued] == 0 and "firing it again" in node.log()


async def test_purging_a_queue_frees_the_tick_records_of_the_jobs_it_deletes(
    roger_client: Client, roger_partition: str
) -> None:
    await roger_client.start_partition(roger_partition, {"default": 1})  # no node: the jobs wait
    beat = Schedule("beat", roger_partition, TICKED, {}, every=60, paused=True)
    await roger_client.put_schedule(beat)
    tick = (int(time.time()) // 60 - 1) * 60
    key = keys.schedule_tick(roger_client.namespace, "beat", tick_label(tick))
    await write(roger_client, key, TickRecord("f", "ghost", "gone", published=True).encode())
    message = JobMessage(
        tick_job_id("beat", tick), TICKED, {}, "default", scheduled_at=tick, schedule="beat", firing="f"
    )
    await roger_client.enqueue_message(message, roger_partition)
    assert await roger_client.purge_queue(roger_partition, "default") == 1
    etcd = await roger_client.etcd()
    assert await etcd.get(key) is None


def skewed(tmp_path: Path, seconds: float) -> str:
    """A PYTHONPATH whose sitecustomize sets a node's wall clock `seconds` off."""
    folder = tmp_path / f"clock{seconds:+g}"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        f"import time\n_real = time.time\ntime.time = lambda: _real() + {seconds}\n"
    )
    return os.pathsep.join([str(folder), str(Path.cwd())])


async def test_nodes_with_clocks_seconds_apart_still_fire_each_tick_once(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    ledger: Path,
    tmp_path: Path,
) -> None:
    await roger_client.start_partition(roger_partition, {"default": 4})
    for offset in (3.0, -3.0):
        await node_factory.start(jobs="tests.jobs", PYTHONPATH=skewed(tmp_path, offset))
    await node_factory.start(jobs="tests.jobs")
    stored = await roger_client.put_schedule(
        Schedule("beat", roger_partition, TICKED, {"ledger": str(ledger)}, every=1)
    )
    start = math.ceil(stored.created_at) + 3  # the fast node may have claimed from its own now on
    await eventually(lambda: max(ticks_run(ledger), default=0) >= start + 12, timeout=30)
    await roger_client.pause_schedule("beat")
    end = start + 12
    run = ticks_run(ledger)
    assert [t for t in range(start, end + 1) if run[t] != 1] == [], run
    assert all(n == 1 for n in run.values()), run


async def test_each_tick_fires_once_while_each_etcd_member_in_turn_the_leader_among_them_stops(
    etcd_cluster: list[EtcdServer],
    roger_rabbitmq_url: str,
    roger_namespace: str,
    roger_partition: str,
    roger_management: Management,
    tmp_path: Path,
    ledger: Path,
) -> None:
    endpoints = ",".join(m.endpoint.endpoints for m in etcd_cluster)
    factory = NodeFactory(roger_rabbitmq_url, endpoints, roger_namespace, tmp_path)
    try:
        await factory.start_many(3, jobs="tests.jobs")
        async with Client(roger_rabbitmq_url, endpoints, roger_namespace) as client:
            await client.start_partition(roger_partition, {"default": 4})
            beat = Schedule("beat", roger_partition, TICKED, {"ledger": str(ledger)}, every=1)
            start = math.ceil((await client.put_schedule(beat)).created_at)

            async def ran_until(t: float) -> None:
                await eventually(lambda: max(ticks_run(ledger), default=0) >= t, timeout=t - time.time() + 20)

            await ran_until(start + 2)
            for member in etcd_cluster:  # one of them leads: its loss means an election
                member.stop()
                await ran_until(time.time() + 3)
                member.start()
            await ran_until(time.time() + 2)
            await client.pause_schedule("beat")
            end = int(time.time()) - 1
            await ran_until(end)
        run = ticks_run(ledger)
        assert [t for t in range(start, end + 1) if run[t] != 1] == [], run
    finally:
        factory.cleanup()
        await roger_management.delete_queues(roger_partition + "-")
        await roger_management.delete_queues(release_queue_name(roger_namespace))


async def test_ticks_stop_piling_up_unstarted_past_the_cap_and_count_as_misfires(
    roger_client: Client,
    roger_partition: str,
    roger_rabbitmq_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A scheduler of our own (no node consumes the partition: every tick's job waits), with a
    # small cap; real etcd and RabbitMQ.
    monkeypatch.setattr(scheduler, "MAX_UNSTARTED", 3)
    await roger_client.start_partition(roger_partition, {"default": 1})
    await roger_client.put_schedule(Schedule("beat", roger_partition, TICKED, {}, every=1))
    etcd, broker = await roger_client.etcd(), await roger_client.broker()
    registry = JobRegistry.from_modules(["tests.jobs"])
    firer = Scheduler(etcd, broker, roger_client.namespace, "solo", "run1", registry)
    task = asyncio.create_task(firer.run())
    try:

        async def misfired() -> int:
            return (await roger_client.get_schedule("beat")).misfired

        await eventually(misfired, timeout=15, message="a tick over the cap counts as a misfire")
        records, _ = await etcd.get_prefix(keys.schedule_ticks_prefix(roger_client.namespace, "beat"))
        assert len(records) == 3
        stats = await broker.stats(queue_name(roger_partition, "default"))
        assert stats is not None and stats.ready == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_app_ensuring_its_schedule_at_every_start_keeps_an_operators_pause(
    roger_client: Client, roger_partition: str
) -> None:
    mine = Schedule("nightly", roger_partition, TICKED, {}, cron="30 2 * * *")
    created = await roger_client.ensure_schedule(mine)
    assert created.cron == "30 2 * * *" and created.created_at > 0
    await roger_client.pause_schedule("nightly")
    again = await roger_client.ensure_schedule(Schedule("nightly", roger_partition, TICKED, {}, every=60))
    assert again.paused and again.cron == "30 2 * * *" and again.created_at == created.created_at
    replaced = await roger_client.put_schedule(Schedule("nightly", roger_partition, TICKED, {}, every=60))
    assert (await roger_client.get_schedule("nightly")).schedule == replaced
