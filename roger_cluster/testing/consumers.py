"""What RabbitMQ shows of a test's cluster: consumers, prefetches, ready messages.

Why it exists: a node consumes a queue once it has attached a consumer with
prefetch = the queue's concurrency, and the management API is where an
operator sees that. Tests wait for it (`wait_consumers`, `wait_prefetches`,
`consumers`) instead of sleeping, and `start_consuming` does the set-up most
integration tests begin with: nodes started, the partition started, every
node consuming every queue. A node names its AMQP connection after itself
(`client_properties connection_name`), so consumers can be told apart by node.
Queue names come from `roger_cluster.names` (`queue_name`,
`buried_queue_name`), never from f-strings.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..client import Client
from ..management import Management
from ..names import queue_name
from .nodes import NodeFactory, NodeProcess
from .wait import eventually

__all__ = [
    "consumers",
    "consumers_by_node",
    "prefetches",
    "ready",
    "start_consuming",
    "wait_consumers",
    "wait_prefetches",
]


async def consumers(client: Client, queue: str, count: int) -> bool:
    """Whether the RabbitMQ queue `queue` exists with `count` consumers."""
    stats = await (await client.broker()).stats(queue)
    return stats is not None and stats.consumers == count


async def ready(client: Client, queue: str) -> int | None:
    """How many messages of `queue` are ready (None: there is no such queue)."""
    stats = await (await client.broker()).stats(queue)
    return None if stats is None else stats.ready


async def prefetches(management: Management, queue: str) -> list[int]:
    """The prefetch of every consumer on `queue`, sorted."""
    return sorted(c.prefetch_count for c in await management.consumers(queue))


async def wait_prefetches(
    management: Management, queue: str, expected: list[int], timeout: float = 15
) -> None:
    """Wait until the consumers of `queue` have exactly the `expected` prefetches (sorted)."""

    async def check() -> bool:
        assert await prefetches(management, queue) == expected
        return True

    await eventually(check, timeout=timeout, message=f"consumers of {queue}")


async def consumers_by_node(management: Management, queue: str) -> list[tuple[str, int]]:
    """(node name, prefetch) of every consumer of `queue`, sorted; "?" for an unnamed connection."""
    names = await management.connection_names()
    found = await management.consumers(queue)
    return sorted((names.get(c.connection_name or "", "?"), c.prefetch_count) for c in found)


async def wait_consumers(
    management: Management, queue: str, expected: list[tuple[str, int]], timeout: float = 15
) -> None:
    """Wait until `queue` has exactly the `expected` (node, prefetch) consumers."""

    async def check() -> bool:
        assert await consumers_by_node(management, queue) == sorted(expected)
        return True

    await eventually(check, timeout=timeout, message=f"consumers of {queue}")


async def start_consuming(
    factory: NodeFactory,
    client: Client,
    management: Management,
    partition: str,
    queues: Mapping[str, int],
    nodes: int = 1,
    jobs: str | None = None,
) -> list[NodeProcess]:
    """Start `nodes` nodes and the partition; return once every node consumes every queue.

    `queues` maps each queue to its concurrency, which is each consumer's
    prefetch; `jobs` is the job modules the nodes may run.
    """
    started = await factory.start_many(nodes, jobs=jobs)
    await client.start_partition(partition, queues)
    for queue, concurrency in queues.items():
        expected = [(node.name, concurrency) for node in started]
        await wait_consumers(management, queue_name(partition, queue), expected)
    return started
