"""The batched acker: never acks past a delivery whose job still runs, and never
holds a finished one back behind it (consumers share channels)."""

from __future__ import annotations

import asyncio
from typing import Any

from roger_cluster.runtime.acks import Acker, ChannelAcks
from roger_cluster.testing import eventually


class Delivery:
    """Stands in for an aio-pika delivery: a tag, and a record of acks sent."""

    sent: list[tuple[int, bool]] = []

    def __init__(self, tag: int) -> None:
        self.delivery_tag = tag

    async def ack(self, multiple: bool = False) -> None:
        Delivery.sent.append((self.delivery_tag, multiple))

    async def give_back(self) -> None:
        Delivery.sent.append((-self.delivery_tag, False))


def deliveries(acker: Acker, count: int) -> list[Any]:
    found = [Delivery(tag) for tag in range(1, count + 1)]
    for d in found:
        acker.track(d)  # type: ignore[arg-type]
    return found


async def test_a_run_is_acked_only_up_to_the_first_unfinished_delivery() -> None:
    """Those done behind it are acked alone: a long job holds no prefetch window back."""
    Delivery.sent = []
    acker = Acker(max_batch=100, delay=0.001)
    d = deliveries(acker, 5)
    for i in (0, 1, 3, 4):  # 3 (tag 3) still runs
        await acker.ack(d[i])
    await acker.flush()
    assert Delivery.sent == [(2, True), (4, False), (5, False)]
    await acker.ack(d[2])
    await acker.flush()
    assert Delivery.sent == [(2, True), (4, False), (5, False), (3, True)]


async def test_a_full_batch_is_acked_at_once_and_a_partial_one_after_the_delay() -> None:
    Delivery.sent = []
    acker = Acker(max_batch=3, delay=0.01)
    d = deliveries(acker, 4)
    for i in range(3):
        await acker.ack(d[i])
    assert Delivery.sent == [(3, True)]
    await acker.ack(d[3])
    assert Delivery.sent == [(3, True)]
    await eventually(lambda: len(Delivery.sent) == 2, timeout=2, interval=0.001)
    assert Delivery.sent == [(3, True), (4, True)]


async def test_a_nacked_delivery_does_not_block_the_run_and_is_never_the_ack_target() -> None:
    Delivery.sent = []
    acker = Acker(max_batch=100, delay=0.001)
    d = deliveries(acker, 3)
    await acker.ack(d[0])
    acker.settled(d[2])  # requeued
    await acker.ack(d[1])
    await acker.flush()
    assert Delivery.sent == [(2, True)]


async def test_consumers_sharing_a_channel_never_ack_each_others_running_deliveries() -> None:
    Delivery.sent = []
    channel = ChannelAcks(delay=0.001)
    fast, slow = Acker(max_batch=2, channel=channel), Acker(max_batch=100, channel=channel)
    tags = [Delivery(tag) for tag in range(1, 6)]
    for tag, acker in zip(tags, (slow, fast, fast, slow, fast), strict=True):
        acker.track(tag)  # type: ignore[arg-type]
    await fast.ack(tags[1])  # type: ignore[arg-type]
    await fast.ack(tags[2])  # type: ignore[arg-type]  # a full batch of fast: tag 1 of slow still runs
    assert Delivery.sent == [(2, False), (3, False)]
    await slow.ack(tags[0])  # type: ignore[arg-type]
    await slow.flush()
    assert Delivery.sent[2:] == [(1, True)]  # 2 and 3 were acked already
    # The slow consumer leaves the channel: its running delivery goes back, its ack later is dropped.
    assert await slow.give_back_all() == 1
    await slow.ack(tags[3])  # type: ignore[arg-type]
    await fast.ack(tags[4])  # type: ignore[arg-type]
    await fast.flush()
    assert Delivery.sent[3:] == [(-4, False), (5, True)]


class SlowSingleAck(Delivery):
    """An ack whose write takes a while when it is a single one (the loop runs meanwhile)."""

    async def ack(self, multiple: bool = False) -> None:
        await asyncio.sleep(0 if multiple else 0.01)
        await super().ack(multiple)


def broker_view(sent: list[tuple[int, bool]], tags: int) -> list[int]:
    """Replays acks as RabbitMQ does: the tags it would refuse (unknown or already acked,
    a channel error that requeues every unacked delivery of the channel)."""
    outstanding, refused = set(range(1, tags + 1)), []
    for tag, multiple in sent:
        if tag not in outstanding:
            refused.append(tag)
        outstanding -= {t for t in outstanding if t <= tag} if multiple else {tag}
    return refused


async def test_overlapping_flushes_never_ack_a_tag_twice() -> None:
    """A lone ack still being written when a later flush acks past it with multiple=True
    would be an unknown tag to RabbitMQ: the channel closes and its jobs run again."""
    Delivery.sent = []
    channel = ChannelAcks(delay=10)  # flushed by hand here
    acker = Acker(max_batch=100, channel=channel)
    d = [SlowSingleAck(tag) for tag in range(1, 5)]
    for delivery in d:
        acker.track(delivery)  # type: ignore[arg-type]
    await acker.ack(d[1])  # type: ignore[arg-type]  # done behind tag 1: a lone ack
    first = asyncio.ensure_future(acker.flush())
    await asyncio.sleep(0)  # the lone ack of tag 2 is on its way
    await acker.ack(d[0])  # type: ignore[arg-type]
    await acker.ack(d[2])  # type: ignore[arg-type]  # 1..3 done: a multiple ack up to 3
    await acker.flush()
    await first
    assert broker_view(Delivery.sent, 4) == [], Delivery.sent
    assert sorted(Delivery.sent) == [(2, False), (3, True)]
