"""Which partition queues this node consumes, and with what prefetch.

A pure function of the cluster's desired state (the partition map and the
paused queues, both from etcd) and of the node itself (its name, labels and
concurrency overrides). Every node computes it for itself from the same
shared state, so no node needs to know the others, and the rule is tested
without any server.

The rule:
- a draining partition is consumed by no node (its running jobs finish);
- a partition limited to `nodes` is consumed only by those nodes; one limited
  to `labels` only by nodes that carry every one of those labels; with both,
  a node must pass both; with neither, every node consumes it;
- a paused queue is consumed by no node;
- a node's `--concurrency PARTITION.QUEUE=N` replaces that queue's
  concurrency on that node only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .cluster.partitions import PartitionMap, PartitionSpec

QueueId = tuple[str, str]  # (partition, queue)


@dataclass(frozen=True)
class NodeProfile:
    """What placement needs to know about one node."""

    name: str
    labels: frozenset[str] = frozenset()
    concurrency: Mapping[QueueId, int] = field(default_factory=dict)


def runs_on(spec: PartitionSpec, node: NodeProfile) -> bool:
    """Whether the partition's node selection includes `node`."""
    if spec.nodes and node.name not in spec.nodes:
        return False
    return set(spec.labels) <= node.labels


def desired_queues(
    partitions: PartitionMap,
    paused: frozenset[QueueId] = frozenset(),
    node: NodeProfile | None = None,
) -> dict[QueueId, int]:
    """Every (partition, queue) `node` should consume, with its prefetch.

    Without `node`, placement is ignored: every queue of every active partition.
    """
    desired: dict[QueueId, int] = {}
    for spec in partitions.values():
        if spec.draining or (node is not None and not runs_on(spec, node)):
            continue
        for queue, concurrency in spec.queues.items():
            queue_id = (spec.name, queue)
            if queue_id in paused:
                continue
            override = node.concurrency.get(queue_id) if node is not None else None
            desired[queue_id] = concurrency if override is None else override
    return desired


def draining_partitions(partitions: PartitionMap) -> frozenset[str]:
    """The partitions being drained."""
    return frozenset(name for name, spec in partitions.items() if spec.draining)
