"""Channels of one Broker: declares on a few kept channels, and the channel_max guard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from roger_cluster.broker import CHANNEL_MAX, DECLARE_CHANNELS, Broker
from roger_cluster.config import AmqpConfig
from roger_cluster.errors import BrokerError
from roger_cluster.management import Management
from roger_cluster.names import buried_queue_name, queue_name
from roger_cluster.testing.servers import RabbitEndpoint


@pytest.fixture
async def broker(roger_rabbitmq: RabbitEndpoint) -> AsyncIterator[Broker]:
    async with Broker(AmqpConfig(url=roger_rabbitmq.amqp_url, queue_type="classic")) as made:
        yield made


async def test_many_declares_at_once_share_a_few_kept_channels(
    broker: Broker, roger_partition: str, roger_management: Management
) -> None:
    try:
        before = broker.open_channels()
        await asyncio.gather(*(broker.declare(f"{roger_partition}x{i}", "q") for i in range(40)))
        assert broker.open_channels() - before == DECLARE_CHANNELS
        await broker.declare(f"{roger_partition}x0", "q")  # again: idempotent, same channels
        assert broker.open_channels() - before == DECLARE_CHANNELS
        stats = await broker.stats(queue_name(f"{roger_partition}x39", "q"))
        assert stats is not None and stats.ready == 0
        assert await broker.stats(buried_queue_name(f"{roger_partition}x39", "q")) is not None
    finally:
        await roger_management.delete_queues(roger_partition)


async def test_a_queue_declared_with_other_settings_fails_alone(
    broker: Broker, roger_partition: str, roger_management: Management, roger_rabbitmq: RabbitEndpoint
) -> None:
    """PRECONDITION_FAILED closes the kept channel it happened on; the declares queued
    behind it on that channel still succeed, and the next declare opens it again."""
    try:
        async with Broker(AmqpConfig(url=roger_rabbitmq.amqp_url, queue_type="quorum")) as other:
            await other.declare(f"{roger_partition}bad", "q")
        names = [f"{roger_partition}ok{i}" for i in range(12)]
        results = await asyncio.gather(
            broker.declare(f"{roger_partition}bad", "q"),
            *(broker.declare(name, "q") for name in names),
            return_exceptions=True,
        )
        assert isinstance(results[0], BrokerError)
        assert "already exists with other settings" in str(results[0])
        assert results[1:] == [None] * len(names)
        await broker.declare(f"{roger_partition}after", "q")
        assert await broker.stats(queue_name(f"{roger_partition}after", "q")) is not None
    finally:
        await roger_management.delete_queues(roger_partition)


async def test_no_channel_past_channel_max_so_the_connection_survives(broker: Broker) -> None:
    channels = [await broker.channel() for _ in range(CHANNEL_MAX - broker.open_channels())]
    try:
        with pytest.raises(BrokerError, match="channel_max"):
            await broker.channel()
        assert broker.is_connected
        await channels.pop().close()
        await (await broker.channel()).close()  # room again
    finally:
        await asyncio.gather(*(c.close() for c in channels))
