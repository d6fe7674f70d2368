"""Partitions with the live state of their queues: what `rogerctl partition show`
and the dashboard show, and how it is read.

The counts come from one of two sources. The management API gives every
queue, consumer and connection in one request each (`Reader.overview`: a few
requests whatever the number of partitions, up to one statistics interval
old). Without it, each queue is read over AMQP (ready messages, consumers),
with the management API asked per queue for what AMQP cannot tell (unacked
counts, which node each consumer belongs to) and None where it does not
answer (`Reader.partition`). Either way the rows come from one builder,
`partition_info`, so a row means the same whichever source filled it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .broker import Broker
from .cluster.membership import NodeInfo
from .cluster.partitions import PartitionSpec
from .errors import ManagementError
from .management import ConsoleQueue, ConsumerInfo, Management, QueueRates
from .names import buried_queue_name, queue_name
from .placement import chosen, describe


@dataclass(frozen=True, order=True)
class NodeConsumer:
    """A consumer on a partition queue: the node it belongs to and its prefetch."""

    node: str  # its connection's name; a node names its connection after itself
    """The consuming node (a node names its connection after itself)."""
    prefetch: int
    """The consumer's prefetch: the queue's concurrency on that node."""


def node_consumers(consumers: Iterable[ConsumerInfo], connections: Mapping[str, str]) -> list[NodeConsumer]:
    """The consumers of one queue the management API lists, as nodes, each live one once.

    The API's consumer records outlive some consumers: one whose channel is
    closed stays (without channel details) until RabbitMQ's stats are collected,
    and one that RabbitMQ cancelled (its queue deleted) stays while its channel
    lives (RabbitMQ 3.10). A node consumes a queue once per channel, so the
    consumers of a queue are counted once per open channel.
    """
    by_channel: dict[str, ConsumerInfo] = {}
    for c in consumers:
        if c.channel_name is not None and c.connection_name is not None:
            by_channel.setdefault(c.channel_name, c)
    return sorted(
        NodeConsumer(connections.get(c.connection_name or "", c.connection_name or "?"), c.prefetch_count)
        for c in by_channel.values()
    )


def placed(spec: PartitionSpec, nodes: Iterable[NodeInfo]) -> list[str]:
    """The live `nodes` that consume the partition's queues while not paused, by name
    (with `replicas`, the K that rendezvous hashing picks among the eligible ones)."""
    if spec.draining:
        return []
    return list(chosen(spec, {n.name: frozenset(n.labels) for n in nodes}))


@dataclass(frozen=True)
class QueueInfo:
    """One queue of a partition as the cluster sees it now.

    None means "cannot tell": unacked counts and consumers per node come from
    the management API, which may be unreachable (and lags by its stats interval).
    """

    name: str
    """The queue's name in the partition."""
    rabbitmq_queue: str
    """The RabbitMQ queue, `<partition>-<queue>`."""
    concurrency: int
    """Jobs at once per node."""
    ready: int | None
    """Jobs waiting in RabbitMQ; None: cannot tell."""
    unacked: int | None
    """Jobs handed to nodes and not finished yet; None: cannot tell (management API)."""
    consumers: int | None
    """Consumers attached, about one per node; None: cannot tell."""
    paused: bool | None = None
    """Whether the queue is paused cluster-wide; None: cannot tell."""
    buried: int | None = None
    """Jobs in its buried queue; None: cannot tell."""
    consumer_nodes: list[NodeConsumer] | None = None
    """Which node consumes it with which prefetch; None: cannot tell."""
    # The live nodes the placement gives the queue to: those that consume it
    # unless it is paused (its partition's `nodes` and `labels`; none while draining).
    placed_on: list[str] | None = None
    """The live nodes placement gives it to; None: cannot tell."""


@dataclass(frozen=True)
class PartitionInfo:
    """A partition with the live state of its queues."""

    name: str
    """The partition's name."""
    queues: list[QueueInfo]
    """Each of its queues, live."""
    placement: str | None = None
    """Which nodes run it and why (`replicas 2 of 3 eligible: n1, n3 (rendezvous)`);
    None: the live nodes were not read."""


@dataclass(frozen=True)
class Observed:
    """What RabbitMQ told about one partition queue; None where it could not tell."""

    ready: int | None = None
    unacked: int | None = None
    consumers: int | None = None
    buried: int | None = None  # ready messages of its `.buried` queue
    consumer_nodes: list[NodeConsumer] | None = None


UNKNOWN = Observed()


def partition_info(
    spec: PartitionSpec,
    observed: Mapping[str, Observed],
    paused: Collection[tuple[str, str]] | None = None,
    live: Iterable[NodeInfo] | None = None,
) -> PartitionInfo:
    """The partition's rows, one per queue of `spec`, from what was `observed` of each queue
    (by queue name; a queue missing is unknown), the paused (partition, queue) pairs and the
    live nodes. None for `paused` or `live`: not known, and the rows say so."""
    live = None if live is None else list(live)
    placed_on = None if live is None else placed(spec, live)
    rows = []
    for queue, concurrency in spec.queues.items():
        seen = observed.get(queue, UNKNOWN)
        rows.append(
            QueueInfo(
                name=queue,
                rabbitmq_queue=queue_name(spec.name, queue),
                concurrency=concurrency,
                ready=seen.ready,
                unacked=seen.unacked,
                consumers=seen.consumers,
                paused=None if paused is None else (spec.name, queue) in paused,
                buried=seen.buried,
                consumer_nodes=seen.consumer_nodes,
                placed_on=placed_on,
            )
        )
    members = None if live is None else {n.name: frozenset(n.labels) for n in live}
    return PartitionInfo(spec.name, rows, None if members is None else describe(spec, members))


class Reader:
    """Reads the live state of partition queues from RabbitMQ; the client's `partition`,
    `overview` and `queue_rates` delegate here. Constructing it does no I/O."""

    def __init__(self, management: Management, vhost: str, broker: Callable[[], Awaitable[Broker]]) -> None:
        self._management = management
        self._vhost = vhost
        self._broker = broker  # connects on first use: the management API may make it unneeded

    async def partition(
        self, spec: PartitionSpec, paused: Collection[tuple[str, str]], live: Iterable[NodeInfo]
    ) -> PartitionInfo:
        """The partition read queue by queue: ready, consumers and buried over AMQP (raises
        BrokerError if RabbitMQ cannot be reached), unacked and consumer nodes from the
        management API where it answers."""
        broker = await self._broker()
        connections = await self._connection_names()
        observed = {
            queue: await self._observe(broker, spec.name, queue, connections) for queue in spec.queues
        }
        return partition_info(spec, observed, paused, live)

    async def overview(
        self, specs: Sequence[PartitionSpec], paused: Collection[tuple[str, str]], live: Sequence[NodeInfo]
    ) -> list[PartitionInfo]:
        """Every partition of `specs`, from three management API requests whatever their
        number; without the API, `partition` for each."""
        try:
            queues = {q.name: q for q in await self._management.queues(self._vhost)}
            consumers = await self._management.all_consumers(self._vhost)
            connections = await self._management.connection_names(self._vhost)
        except ManagementError:
            return [await self.partition(spec, paused, live) for spec in specs]
        by_queue: dict[str, list[ConsumerInfo]] = {}
        for c in consumers:
            by_queue.setdefault(c.queue, []).append(c)
        return [
            partition_info(
                spec,
                {q: _from_console(spec.name, q, queues, by_queue, connections) for q in spec.queues},
                paused,
                live,
            )
            for spec in specs
        ]

    async def rates(self) -> dict[str, QueueRates] | None:
        """RabbitMQ queue name -> messages per second in, delivered and acked, for every
        queue at once; None if the management API cannot be reached."""
        try:
            return await self._management.queue_rates(self._vhost)
        except ManagementError:
            return None

    async def _observe(
        self, broker: Broker, partition: str, queue: str, connections: dict[str, str] | None
    ) -> Observed:
        name = queue_name(partition, queue)
        stats = await broker.stats(name)
        unacked = await self._management.unacked(name, self._vhost)
        buried = await broker.stats(buried_queue_name(partition, queue))
        return Observed(
            ready=stats.ready if stats else None,
            unacked=unacked,
            consumers=stats.consumers if stats else None,
            buried=buried.ready if buried else None,
            consumer_nodes=await self._consumer_nodes(name, connections),
        )

    async def _connection_names(self) -> dict[str, str] | None:
        """Connection name -> the name its client gave, or None without the management API."""
        try:
            return await self._management.connection_names(self._vhost)
        except ManagementError:
            return None

    async def _consumer_nodes(
        self, name: str, connections: dict[str, str] | None
    ) -> list[NodeConsumer] | None:
        if connections is None:
            return None
        try:
            consumers = await self._management.consumers(name, self._vhost)
        except ManagementError:
            return None
        return node_consumers(consumers, connections)


def _from_console(
    partition: str,
    queue: str,
    queues: Mapping[str, ConsoleQueue],
    consumers: Mapping[str, list[ConsumerInfo]],
    connections: Mapping[str, str],
) -> Observed:
    """One partition queue as the management API's lists show it."""
    name = queue_name(partition, queue)
    main, buried = queues.get(name), queues.get(buried_queue_name(partition, queue))
    return Observed(
        ready=main.messages_ready if main else None,
        unacked=main.messages_unacknowledged if main else None,
        consumers=main.consumers if main else None,
        buried=buried.messages_ready if buried else None,
        consumer_nodes=node_consumers(consumers.get(name, []), connections),
    )
