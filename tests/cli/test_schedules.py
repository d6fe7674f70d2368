"""rogerctl schedule: add, list, show, pause, resume, run-now, remove; refusals and warnings."""

from __future__ import annotations

import json
from typing import Any

from roger_cluster import Client
from roger_cluster.cluster import keys
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory
from roger_cluster.testing.rogerctl import rogerctl


def listed(factory: NodeFactory) -> list[dict[str, Any]]:
    done = rogerctl(factory, "--json", "schedule", "list")
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


async def test_a_schedule_is_added_listed_paused_resumed_run_now_and_removed(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    await roger_client.start_partition(p, {"default": 1})
    added = rogerctl(
        node_factory, "--json", "schedule", "add", "nightly", p, "tests.jobs:Ticked", "{}",
        "--cron", "0 30 2 * * *", "--tz", "Europe/Amsterdam", "--catch-up", "all", "--paused",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    [row] = listed(node_factory)
    assert row["name"] == "nightly" and row["cron"] == "0 30 2 * * *" and row["tz"] == "Europe/Amsterdam"
    assert row["paused"] is True and row["next_fire"] is None and row["catch_up"] == "all"
    assert row["job"] == "tests.jobs:Ticked" and row["args"] == {}

    assert rogerctl(node_factory, "schedule", "resume", "nightly").returncode == 0
    [row] = listed(node_factory)
    assert row["paused"] is False and row["next_fire"] is not None and row["next_fire"] % 60 == 0
    human = rogerctl(node_factory, "schedule", "list").stdout.splitlines()
    assert human[0].split()[:5] == ["NAME", "PARTITION", "JOB", "WHEN", "PAUSED"]
    assert human[1].split()[0] == "nightly"
    assert rogerctl(node_factory, "schedule", "pause", "nightly").returncode == 0
    assert listed(node_factory)[0]["paused"] is True

    ran = rogerctl(node_factory, "schedule", "run-now", "nightly")
    assert ran.returncode == 0, ran.stderr
    assert len(ran.stdout.strip()) == 32  # a fresh id, not a tick's
    stats = await (await roger_client.broker()).stats(queue_name(p, "default"))
    assert stats is not None and stats.ready == 1
    shown = json.loads(rogerctl(node_factory, "--json", "schedule", "show", "nightly").stdout)
    assert shown["name"] == "nightly"
    human = rogerctl(node_factory, "schedule", "show", "nightly").stdout.splitlines()
    assert "name:        nightly" in human and "next_fire:   -" in human and "catch_up:    all" in human

    etcd = await roger_client.etcd()
    ns = roger_client.namespace
    await etcd.put(keys.schedule_tick(ns, "nightly", "20261224T013000Z"), b"{}")
    assert rogerctl(node_factory, "schedule", "remove", "nightly").returncode == 0
    assert listed(node_factory) == []
    for prefix in (keys.schedule_states_prefix(ns), keys.schedule_ticks_prefix(ns)):
        assert (await etcd.get_prefix(prefix))[0] == []  # its state and tick records went with it
    for action in ("show", "pause", "resume", "remove", "run-now"):
        gone = rogerctl(node_factory, "schedule", action, "nightly")
        assert gone.returncode == 4 and "no schedule named 'nightly'" in gone.stderr, (action, gone.stderr)


async def test_every_takes_units_and_the_schedule_ticks_on_its_multiples(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    done = rogerctl(
        node_factory, "schedule", "add", "beat", roger_partition, "tests.jobs:Ticked", "{}", "--every", "5m"
    )
    assert done.returncode == 0, done.stderr
    assert "every 300s" in done.stdout
    assert f"partition {roger_partition} is not started: its ticks are skipped" in done.stderr
    [row] = listed(node_factory)
    assert row["every"] == 300 and row["next_fire"] % 300 == 0 and row["catch_up"] == "latest"


async def test_a_class_missing_from_an_importable_module_is_refused(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    done = rogerctl(
        node_factory, "schedule", "add", "s", roger_partition, "tests.jobs:Missing", "{}", "--every", "1m"
    )
    assert done.returncode == 2
    assert "module tests.jobs has no Missing; nothing added" in done.stderr
    assert listed(node_factory) == []


async def test_a_module_rogerctl_cannot_import_is_added_with_a_warning(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    done = rogerctl(
        node_factory,
        "schedule",
        "add",
        "s",
        roger_partition,
        "only_on_nodes.jobs:Report",
        "{}",
        "--every",
        "1m",
    )
    assert done.returncode == 0, done.stderr
    assert "cannot import only_on_nodes.jobs here" in done.stderr and "added without checking" in done.stderr
    assert [r["job"] for r in listed(node_factory)] == ["only_on_nodes.jobs:Report"]


async def test_bad_schedules_exit_2_with_a_clear_message(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    base = ["schedule", "add", "s", roger_partition, "tests.jobs:Ticked", "{}"]
    for extra, message in (
        (["--cron", "* * *"], "has 3 fields"),
        (["--cron", "61 * * * *"], "is not valid"),
        (["--cron", "* * * * *", "--tz", "Mars/Olympus"], "time zone 'Mars/Olympus' is unknown"),
        (["--every", "soon"], "not a whole number"),
        (["--every", "10s", "--tz", "Europe/Amsterdam"], "--tz applies to --cron only"),
    ):
        done = rogerctl(node_factory, *base, *extra)
        assert done.returncode == 2 and message in done.stderr, (extra, done.stderr)
    assert rogerctl(node_factory, *base).returncode == 2  # neither --cron nor --every
    assert listed(node_factory) == []


async def test_a_schedule_entry_nodes_cannot_read_is_listed_by_doctor_and_hidden_from_the_list(
    node_factory: NodeFactory, roger_client: Client
) -> None:
    etcd = await roger_client.etcd()
    key = keys.schedule(roger_client.namespace, "broken")
    await etcd.put(key, b'{"name": "broken", "partition": "p", "job": "m:J", "cron": "0 0 30 2 *"}')
    doctor = rogerctl(node_factory, "--json", "doctor")
    assert doctor.returncode == 5, doctor.stderr
    [finding] = json.loads(doctor.stdout)
    assert finding["key"] == key and "never fires" in finding["problem"]
    assert "schedule remove broken" in finding["fix"]
    assert listed(node_factory) == []
