"""The partition map: which partitions exist, their queues and concurrency.

The map lives in etcd (`<ns>/partitions/<name>`, JSON) and is the desired state
every node converges to. `follow_map` keeps a node's copy of it current
through `watch.follow_prefix`, so a node never misses a change and never
crashes on one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError, InvalidEntry, UnknownPartition
from ..names import (
    check_concurrency,
    check_label,
    check_node,
    check_partition,
    check_queue,
    check_replicas,
)
from . import keys
from .etcd import Etcd, WatchEvent
from .watch import follow_prefix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartitionSpec:
    """One partition as the map holds it.

    `nodes` and `labels` limit the nodes that consume it (empty: every node);
    `replicas` picks that many of those nodes (None: all of them; see
    `placement.py`); `draining` is set by `partition stop --drain` until every
    node is idle.
    """

    name: str
    """The partition's name."""
    queues: Mapping[str, int] = field(default_factory=dict)
    """Its queues and their concurrency (jobs at once per node)."""
    nodes: tuple[str, ...] = ()
    """Only these nodes consume it; empty: every node."""
    labels: tuple[str, ...] = ()
    """Only nodes with all these labels consume it; empty: every node."""
    draining: bool = False
    """True while `stop_partition(drain=True)` waits for its running jobs."""
    replicas: int | None = None
    """Run on this many of the eligible live nodes, chosen by rendezvous hashing; None: all."""

    def __post_init__(self) -> None:
        check_partition(self.name)
        if self.replicas is not None:
            check_replicas(self.name, self.replicas)
        if not self.queues:
            raise ConfigError(f"partition {self.name!r} needs at least one queue")
        for queue, concurrency in self.queues.items():
            check_queue(queue)
            check_concurrency(queue, concurrency)
        object.__setattr__(self, "queues", dict(sorted(self.queues.items())))
        object.__setattr__(self, "nodes", tuple(sorted({check_node(n) for n in self.nodes})))
        object.__setattr__(self, "labels", tuple(sorted({check_label(label) for label in self.labels})))

    def encode(self) -> bytes:
        """The JSON value stored in etcd (readable with etcdctl); defaults are left out."""
        data: dict[str, object] = {"queues": dict(self.queues)}
        if self.nodes:
            data["nodes"] = list(self.nodes)
        if self.labels:
            data["labels"] = list(self.labels)
        if self.draining:
            data["draining"] = True
        if self.replicas is not None:
            data["replicas"] = self.replicas
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def decode(cls, name: str, value: bytes) -> PartitionSpec:
        """Parse a stored value; InvalidEntry if someone wrote garbage (or a name,
        queue or concurrency the rules do not allow)."""
        try:
            data = json.loads(value)
            queues = data["queues"]
            if not isinstance(queues, dict):
                raise TypeError("queues is not an object")
            nodes = _strings(data.get("nodes", []), "nodes")
            labels = _strings(data.get("labels", []), "labels")
            draining = data.get("draining", False)
            if not isinstance(draining, bool):
                raise TypeError("draining is not true or false")
            replicas = data.get("replicas")  # absent in values written before --replicas: every node
            return cls(name, queues, nodes, labels, draining, replicas)
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # ConfigError is a ValueError
            why = f"missing {e}" if isinstance(e, KeyError) else str(e)
            raise InvalidEntry(f"partition {name!r} in etcd is not valid: {why}") from e


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{what} is not a list of strings")
    return tuple(value)


PartitionMap = dict[str, PartitionSpec]


def parse_entry(namespace: str, key: str, value: bytes) -> PartitionSpec | None:
    """A map entry, or None (logged) if the stored value cannot be used."""
    name = keys.name_of(keys.partitions_prefix(namespace), key)
    try:
        return PartitionSpec.decode(name, value)
    except ConfigError as e:
        log.error("ignoring partition %r: %s", name, e)
        return None


async def read_map(etcd: Etcd, namespace: str) -> tuple[PartitionMap, int]:
    """The whole map and the revision it was read at."""
    kvs, revision = await etcd.get_prefix(keys.partitions_prefix(namespace))
    result: PartitionMap = {}
    for kv in kvs:
        spec = parse_entry(namespace, kv.key, kv.value)
        if spec is not None:
            result[spec.name] = spec
    return result, revision


async def find_partition(etcd: Etcd, namespace: str, name: str) -> PartitionSpec | None:
    """One partition, or None if it is not in the map."""
    kv = await etcd.get(keys.partition(namespace, name))
    return None if kv is None else PartitionSpec.decode(name, kv.value)


async def get_partition(etcd: Etcd, namespace: str, name: str) -> PartitionSpec:
    """One partition, or UnknownPartition."""
    spec = await find_partition(etcd, namespace, name)
    if spec is None:
        raise UnknownPartition(f"partition {name!r} does not exist")
    return spec


async def put_partition(etcd: Etcd, namespace: str, spec: PartitionSpec) -> int:
    """Create or reconfigure a partition; returns the etcd revision of the write."""
    return await etcd.put(keys.partition(namespace, spec.name), spec.encode())


async def create_partition(etcd: Etcd, namespace: str, spec: PartitionSpec) -> PartitionSpec:
    """Write `spec` only if the partition does not exist (one etcd transaction), and
    return the spec in force: `spec` if it was written, else the one already there.

    An entry that is there but does not decode raises InvalidEntry: it is left as it is.
    """
    key = keys.partition(namespace, spec.name)
    while True:
        holder = await etcd.create(key, spec.encode())
        if holder is None:
            return spec
        if holder.create_revision:  # else deleted between the compare and the read: try again
            return PartitionSpec.decode(spec.name, holder.value)


async def delete_partition(etcd: Etcd, namespace: str, name: str) -> bool:
    """Remove a partition from the map; False if it was not there."""
    return await etcd.delete(keys.partition(namespace, name)) > 0


async def follow_map(
    etcd: Etcd,
    namespace: str,
    on_change: Callable[[PartitionMap], Awaitable[None]],
) -> None:
    """Call `on_change` with the full map at start and after every change. Runs forever."""
    prefix = keys.partitions_prefix(namespace)
    current: PartitionMap = {}

    async def reset(state: dict[str, bytes]) -> None:
        current.clear()
        for key, value in state.items():
            if (spec := parse_entry(namespace, key, value)) is not None:
                current[spec.name] = spec
        await on_change(dict(current))

    async def apply(events: list[WatchEvent]) -> None:
        for event in events:
            name = keys.name_of(prefix, event.key)
            spec = None if event.value is None else parse_entry(namespace, event.key, event.value)
            if spec is None:
                # An unusable value is ignored as a node starting now would ignore it:
                # every node computes the same map from what etcd holds.
                current.pop(name, None)
            else:
                current[name] = spec
        await on_change(dict(current))

    await follow_prefix(etcd, prefix, reset, apply)
