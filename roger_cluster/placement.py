"""Which partition queues this node consumes, and with what prefetch.

A pure function of the cluster's desired state (the partition map, the
paused queues and the live members, all from etcd) and of the node itself
(its name, labels and concurrency overrides). Every node computes it for
itself from the same shared state, so no coordinator is needed, and the rule
is tested without any server.

The rule:
- a draining partition is consumed by no node (its running jobs finish);
- a partition limited to `nodes` is consumed only by those nodes; one limited
  to `labels` only by nodes that carry every one of those labels; with both,
  a node must pass both; with neither, every node consumes it. The nodes that
  pass are the partition's *eligible* nodes;
- a partition with `replicas` K is consumed by K of its eligible live nodes:
  those with the highest rendezvous score (`score`, a stable 64-bit hash of
  partition and node names; highest-random-weight hashing). Every node that
  sees the same members picks the same K; a node that leaves moves only its
  own partitions, a node that joins takes about 1/N of them. With K or fewer
  eligible nodes, all of them consume it;
- a paused queue is consumed by no node;
- a node's `--concurrency PARTITION.QUEUE=N` replaces that queue's
  concurrency on that node only.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Collection, Iterable, Mapping
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
    return _selects(spec, node.name, node.labels)


def _selects(spec: PartitionSpec, name: str, labels: frozenset[str]) -> bool:
    if spec.nodes and name not in spec.nodes:
        return False
    return labels.issuperset(spec.labels)


Members = Mapping[str, frozenset[str]]  # live node name -> its labels


def score(partition: str, node: str) -> int:
    """The rendezvous weight of `node` for `partition`: the same on every machine and
    every Python run (blake2b, not the salted `hash()`)."""
    digest = hashlib.blake2b(f"{partition}\x00{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def eligible(spec: PartitionSpec, members: Members) -> list[str]:
    """The live members the partition's `nodes` and `labels` let consume it, by name."""
    if not spec.nodes and not spec.labels:
        return sorted(members)
    return sorted(name for name, labels in members.items() if _selects(spec, name, labels))


def rendezvous(partition: str, candidates: Iterable[str], k: int) -> list[str]:
    """The `k` candidates with the highest score for `partition`, best first."""
    return heapq.nlargest(k, candidates, key=lambda name: (score(partition, name), name))


def chosen(spec: PartitionSpec, members: Members) -> tuple[str, ...]:
    """The live members that consume the partition (draining and pauses aside), by name."""
    names = eligible(spec, members)
    if spec.replicas is None or spec.replicas >= len(names):
        return tuple(names)
    return tuple(sorted(rendezvous(spec.name, names, spec.replicas)))


def describe(spec: PartitionSpec, members: Members) -> str:
    """Which nodes run the partition and why, for `partition show`:
    `replicas 2 of 3 eligible: n1, n3 (rendezvous)`."""
    if spec.draining:
        return "draining: no node takes its jobs"
    names = eligible(spec, members)
    listed = ", ".join(chosen(spec, members)) or "none"
    if spec.replicas is None:
        if spec.nodes or spec.labels:
            return f"every eligible node ({len(names)} of {len(members)} live): {listed}"
        return f"every live node ({len(names)}): {listed}"
    if spec.replicas >= len(names):
        return f"replicas {spec.replicas}, but only {len(names)} eligible: all of them: {listed}"
    return f"replicas {spec.replicas} of {len(names)} eligible: {listed} (rendezvous)"


def placement_cost(partitions: PartitionMap, members: Members) -> int:
    """An upper bound of the scores `Assignments.update` computes: one per member and
    partition with `replicas` (what a first computation costs)."""
    return len(members) * sum(1 for spec in partitions.values() if spec.replicas is not None)


class Assignments:
    """The nodes each partition with `replicas` runs on, kept current as the map and
    the members change, at a cost that grows with what changed.

    `chosen` costs one score per eligible member and partition; recomputing every
    partition on every membership change would cost partitions x members scores
    (10 M at 1,000 nodes x 10,000 partitions: seconds of CPU on every node, for
    every join or death). Here a member leaving recomputes only the partitions it
    ran (about K/N of them), a member joining costs one score per partition
    (it enters where it beats the K-th best), and a changed spec recomputes that
    partition. The result is always `chosen(spec, members)` (tested).
    """

    def __init__(self) -> None:
        self._members: dict[str, frozenset[str]] = {}
        self._specs: dict[str, PartitionSpec] = {}
        self._top: dict[str, list[tuple[int, str]]] = {}  # partition -> (score, node), best first

    def nodes_of(self, partition: str) -> tuple[str, ...]:
        """The nodes a partition with `replicas` runs on, by name; () if unknown."""
        return tuple(sorted(name for _, name in self._top.get(partition, ())))

    def copy(self) -> Assignments:
        """An independent copy (the simulation derives one view's from another's)."""
        other = Assignments()
        other._members = dict(self._members)
        other._specs = dict(self._specs)
        other._top = {p: list(top) for p, top in self._top.items()}
        return other

    def update(self, partitions: PartitionMap, members: Members) -> None:
        """Bring the assignments to `partitions` and `members`."""
        old = self._members
        changed = {n for n in old.keys() & members.keys() if old[n] != members[n]}
        left = (old.keys() - members.keys()) | changed
        joined = [n for n in members if n not in old or n in changed]
        self._members = dict(members)
        for name in [p for p in self._specs if p not in partitions or partitions[p].replicas is None]:
            del self._specs[name]
            del self._top[name]
        for spec in partitions.values():
            if spec.replicas is None:
                continue
            before = self._specs.get(spec.name)
            top = self._top.get(spec.name)
            if top is None or (before is not spec and before != spec) or any(n in left for _, n in top):
                self._specs[spec.name] = spec
                self._top[spec.name] = self._compute(spec)
            elif joined:
                self._admit(spec, top, joined)

    def _compute(self, spec: PartitionSpec) -> list[tuple[int, str]]:
        assert spec.replicas is not None
        names = eligible(spec, self._members)
        return heapq.nlargest(spec.replicas, ((score(spec.name, n), n) for n in names))

    def _admit(self, spec: PartitionSpec, top: list[tuple[int, str]], joined: Collection[str]) -> None:
        assert spec.replicas is not None
        for name in joined:
            if not _selects(spec, name, self._members[name]):
                continue
            entry = (score(spec.name, name), name)
            if len(top) < spec.replicas:
                top.append(entry)
            elif entry > top[-1]:
                top[-1] = entry
            else:
                continue
            top.sort(reverse=True)


def _placed_on(spec: PartitionSpec, node: NodeProfile, assignments: Assignments | None) -> bool:
    if not runs_on(spec, node):
        return False
    if spec.replicas is None:
        return True
    return assignments is not None and node.name in assignments.nodes_of(spec.name)


def desired_queues(
    partitions: PartitionMap,
    paused: frozenset[QueueId] = frozenset(),
    node: NodeProfile | None = None,
    assignments: Assignments | None = None,
) -> dict[QueueId, int]:
    """Every (partition, queue) `node` should consume, with its prefetch.

    Without `node`, placement is ignored: every queue of every active partition.
    A partition with `replicas` is consumed only where `assignments` (kept current
    by the caller from the live members) puts it; without them, nowhere.
    """
    desired: dict[QueueId, int] = {}
    for spec in partitions.values():
        if spec.draining or (node is not None and not _placed_on(spec, node, assignments)):
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
