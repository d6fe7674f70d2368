"""Small conditions the integration tests wait for with `eventually`."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from roger_cluster import Client

T = TypeVar("T")


async def equals(value: Awaitable[T], expected: T) -> bool:
    """Whether `value` comes out as `expected` (an AssertionError says what it was)."""
    actual = await value
    assert actual == expected
    return True


async def consumers(client: Client, queue: str, count: int) -> bool:
    """Whether the RabbitMQ queue `queue` exists with `count` consumers."""
    stats = await (await client.broker()).stats(queue)
    return stats is not None and stats.consumers == count
