"""What an enqueued job looks like on the broker: the properties docs/message-format.md promises."""

from __future__ import annotations

import time

from roger_cluster import Client
from roger_cluster.codec import CONTENT_TYPE, decode
from roger_cluster.demo import Noop
from roger_cluster.names import queue_name


async def test_an_enqueued_job_carries_its_id_class_partition_and_time(
    roger_client: Client, roger_partition: str
) -> None:
    broker = await roger_client.broker()
    await broker.declare(roger_partition, "default")
    before = int(time.time())
    single = await roger_client.enqueue(Noop(), roger_partition)
    [many] = await roger_client.enqueue_many([Noop()], roger_partition)
    peeked = await broker.peek(queue_name(roger_partition, "default"), 10)
    assert [decode(p.body).id for p in peeked] == [single, many]
    for p, job_id in zip(peeked, (single, many), strict=True):
        props = p.properties
        assert props["message_id"] == job_id
        assert props["content_type"] == CONTENT_TYPE
        assert props["app_id"] == roger_partition
        assert props["type"] == Noop.path()
        assert before <= props["timestamp"].timestamp() <= time.time()  # AMQP keeps whole seconds
        assert [k for k in p.headers if not k.startswith("x-")] == []  # only the broker's own
