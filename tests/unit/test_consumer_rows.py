"""What `partition show` and the dashboard make of what RabbitMQ reports: no I/O."""

from __future__ import annotations

from roger_cluster.cli.info import queue_row
from roger_cluster.cluster.membership import NodeInfo
from roger_cluster.cluster.partitions import PartitionSpec
from roger_cluster.management import ConsumerInfo
from roger_cluster.overview import NodeConsumer, Observed, QueueInfo, node_consumers, partition_info, placed

CONNECTIONS = {"10.0.0.1:1 -> 10.0.0.9:5672": "n1", "10.0.0.2:1 -> 10.0.0.9:5672": "n2"}


def consumer(tag: str, connection: str | None, channel: int = 4, prefetch: int = 3) -> ConsumerInfo:
    channel_name = None if connection is None else f"{connection} ({channel})"
    return ConsumerInfo("p-default", "/", tag, prefetch, True, True, channel_name, connection)


def test_each_open_channel_counts_once_and_records_of_closed_channels_not_at_all() -> None:
    records = [
        consumer("old1", "10.0.0.1:1 -> 10.0.0.9:5672"),  # cancelled by RabbitMQ, record kept
        consumer("new1", "10.0.0.1:1 -> 10.0.0.9:5672"),
        consumer("new2", "10.0.0.2:1 -> 10.0.0.9:5672"),
        consumer("gone", None),  # its channel closed; the stats are not collected yet
    ]
    assert node_consumers(records, CONNECTIONS) == [NodeConsumer("n1", 3), NodeConsumer("n2", 3)]


def test_a_paused_queue_says_paused_and_where_it_runs_on_resume() -> None:
    spec = PartitionSpec("p", {"default": 3}, labels=("gpu",))
    nodes = [NodeInfo("n2", "h", 1, "v", 0.0, ("gpu",)), NodeInfo("n1", "h", 1, "v", 0.0, ("gpu", "x"))]
    nodes.append(NodeInfo("cpu", "h", 1, "v", 0.0))
    assert placed(spec, nodes) == ["n1", "n2"]
    assert placed(PartitionSpec("p", {"default": 3}, draining=True), nodes) == []

    info = QueueInfo("default", "p-default", 3, 5, 0, 0, paused=True, buried=0, consumer_nodes=[])
    assert queue_row(info)[-1] == "paused (no live node on resume)"
    assert queue_row(QueueInfo(**{**vars(info), "placed_on": ["n1", "n2"]}))[-1] == "paused (n1,n2 on resume)"
    running = QueueInfo(**{**vars(info), "paused": False, "consumer_nodes": [NodeConsumer("n1", 3)]})
    assert queue_row(running)[-1] == "n1"


def test_one_builder_makes_every_row_whatever_source_observed_the_queues() -> None:
    spec = PartitionSpec("p", {"default": 3, "mail": 1}, nodes=("n1",))
    nodes = [NodeInfo("n1", "h", 1, "v", 0.0), NodeInfo("n2", "h", 1, "v", 0.0)]
    seen = {
        "default": Observed(ready=5, unacked=1, consumers=1, buried=0, consumer_nodes=[NodeConsumer("n1", 3)])
    }
    info = partition_info(spec, seen, {("p", "mail")}, nodes)
    default, mail = info.queues
    assert (default.rabbitmq_queue, default.ready, default.paused, default.placed_on) == (
        "p-default",
        5,
        False,
        ["n1"],
    )
    assert (mail.name, mail.ready, mail.consumer_nodes, mail.paused) == ("mail", None, None, True)
    unknown = partition_info(spec, {}).queues[0]
    assert (unknown.paused, unknown.placed_on, unknown.concurrency) == (None, None, 3)
