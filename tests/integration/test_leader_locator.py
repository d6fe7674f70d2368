"""Quorum partition queues are created with a balanced leader locator, and queues made
before (without it) are declared as they are, never refused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from roger_cluster.broker import Broker
from roger_cluster.config import AmqpConfig
from roger_cluster.management import Management
from roger_cluster.names import buried_queue_name, queue_name
from roger_cluster.testing.servers import RabbitEndpoint


@pytest.fixture
async def broker(
    roger_rabbitmq: RabbitEndpoint, roger_management: Management, roger_partition: str
) -> AsyncIterator[Broker]:
    async with Broker(AmqpConfig(url=roger_rabbitmq.amqp_url)) as made:
        yield made
    await roger_management.delete_queues(roger_partition)


async def _arguments(management: Management, queue: str) -> dict[str, object]:
    found = await management.api(f"/api/queues/%2F/{queue}")
    assert isinstance(found, dict)
    arguments = found["arguments"]
    assert isinstance(arguments, dict)
    return arguments


async def test_a_new_quorum_queue_gets_the_balanced_leader_locator(
    broker: Broker, roger_partition: str, roger_management: Management
) -> None:
    await broker.declare(roger_partition, "default")
    await broker.declare(roger_partition, "default")  # again: the same arguments
    for name in (queue_name(roger_partition, "default"), buried_queue_name(roger_partition, "default")):
        assert (await _arguments(roger_management, name))["x-queue-leader-locator"] == "balanced"


async def test_a_queue_made_without_the_locator_is_declared_as_it_is(
    broker: Broker, roger_partition: str, roger_management: Management
) -> None:
    main, buried = queue_name(roger_partition, "default"), buried_queue_name(roger_partition, "default")
    # As an earlier version declared them.
    await broker._declare(
        {main: broker.main_arguments(roger_partition, "default"), buried: {"x-queue-type": "quorum"}}
    )
    await broker.declare(roger_partition, "default")  # refused once, then declared without the locator
    await broker.declare(roger_partition, "default")  # remembered: not refused again
    assert "x-queue-leader-locator" not in await _arguments(roger_management, main)
    assert await broker.stats(main) is not None
