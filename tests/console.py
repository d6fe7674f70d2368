"""What the RabbitMQ console shows per node: consumers of a queue by node name.

A node names its AMQP connection after itself (`client_properties
connection_name`), so the management API tells which node each consumer
belongs to.
"""

from __future__ import annotations

from roger_cluster.management import Management
from roger_cluster.testing import eventually


async def consumers_by_node(management: Management, queue: str) -> list[tuple[str, int]]:
    """(node name, prefetch) of every consumer of `queue`, sorted; "?" for an unnamed connection."""
    names = await management.connection_names()
    consumers = await management.consumers(queue)
    return sorted((names.get(c.connection_name or "", "?"), c.prefetch_count) for c in consumers)


async def wait_consumers(
    management: Management, queue: str, expected: list[tuple[str, int]], timeout: float = 15
) -> None:
    """Wait until `queue` has exactly the `expected` (node, prefetch) consumers."""

    async def check() -> bool:
        assert await consumers_by_node(management, queue) == sorted(expected)
        return True

    await eventually(check, timeout=timeout, message=f"consumers of {queue}")
