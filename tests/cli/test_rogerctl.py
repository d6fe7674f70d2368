"""rogerctl as a subprocess: bad input gets a clear error, an exit code, and changes nothing."""

from __future__ import annotations

import json

import pytest

from roger_cluster import Client
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory
from roger_cluster.testing.rogerctl import rogerctl


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["partition", "start", "{p}", "default=ten"], "must be a whole number, got 'ten'"),
        (["partition", "start", "{p}", "default=-1"], "must be between 1 and 10000, got -1"),
        (["partition", "start", "{p}", "default"], "must look like QUEUE=CONCURRENCY"),
        (["partition", "start", "my-app", "default=1"], "partition name 'my-app' is not allowed"),
        (["partition", "start", "{p}", "de.fault=1"], "queue name 'de.fault' is not allowed"),
        (["partition", "start", "{p}", "a=1", "a=2"], "queue 'a' is given twice"),
        (["job", "enqueue", "{p}", "nocolon"], "must look like module.path:ClassName"),
        (["job", "enqueue", "{p}", "tests.jobs:Record", "{{bad json"], "not valid JSON"),
        (["job", "enqueue", "{p}", "tests.jobs:NotAJob", "{{}}"], "is not a roger_cluster Job subclass"),
    ],
)
async def test_bad_input_exits_2_with_a_message_and_changes_nothing(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, args: list[str], message: str
) -> None:
    done = rogerctl(node_factory, *(a.format(p=roger_partition) for a in args))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert await roger_client.partitions() == []


def test_usage_errors_exit_2(node_factory: NodeFactory) -> None:
    assert rogerctl(node_factory, "partition", "start", "p").returncode == 2
    assert rogerctl(node_factory, "frobnicate").returncode == 2


def test_an_unreachable_etcd_exits_1_naming_it(node_factory: NodeFactory) -> None:
    done = rogerctl(node_factory, "--etcd", "127.0.0.1:1", "nodes")
    assert done.returncode == 1
    assert done.stderr.startswith("rogerctl: cannot reach etcd at 127.0.0.1:1")


def test_an_unreachable_rabbitmq_exits_1_naming_it(node_factory: NodeFactory, roger_partition: str) -> None:
    done = rogerctl(
        node_factory,
        "--amqp-url",
        "amqp://guest:guest@127.0.0.1:1/",
        "partition",
        "start",
        roger_partition,
        "default=1",
    )
    assert done.returncode == 1
    assert done.stderr.startswith("rogerctl: cannot reach RabbitMQ at amqp://127.0.0.1:1/")


async def test_unknown_partitions_exit_4(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    for args in (
        ["partition", "show", roger_partition],
        ["partition", "stop", roger_partition],
        ["job", "enqueue", roger_partition, "tests.jobs:Record", '{"ledger": "/dev/null"}'],
    ):
        done = rogerctl(node_factory, *args)
        assert done.returncode == 4, (args, done.stderr)
        assert roger_partition in done.stderr or "no queue takes it" in done.stderr


async def test_start_list_show_enqueue_in_json(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    assert rogerctl(node_factory, "partition", "start", p, "default=3", "other=1").returncode == 0
    listed = json.loads(rogerctl(node_factory, "--json", "partition", "list").stdout)
    assert listed == [
        {
            "name": p,
            "queues": {"default": 3, "other": 1},
            "draining": False,
            "nodes": [],
            "labels": [],
            "replicas": None,
            "paused": [],
        }
    ]

    enqueued = rogerctl(node_factory, "job", "enqueue", p, "tests.jobs:OtherQueue", '{"ledger": "/dev/null"}')
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()
    assert len(job_id) == 32

    shown = json.loads(rogerctl(node_factory, "--json", "partition", "show", p).stdout)
    by_queue = {q["name"]: q for q in shown}
    assert by_queue["other"]["ready"] == 1
    assert by_queue["default"]["ready"] == 0
    assert by_queue["default"]["concurrency"] == 3

    human = rogerctl(node_factory, "partition", "show", p).stdout.splitlines()
    assert human[0].split() == [
        *["QUEUE", "RABBITMQ", "QUEUE", "CONCURRENCY", "PAUSED"],
        *["READY", "UNACKED", "BURIED", "CONSUMERS", "NODES"],
    ]
    assert human[1].split()[:8] == ["default", queue_name(p, "default"), "3", "no", "0", "0", "0", "0"]
