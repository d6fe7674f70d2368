"""What nodes skip without a word: entries in etcd they cannot use.

A node that finds a partition or schedule value it cannot decode logs it
once and goes on without it (a watch must never crash a node), and a paused
key that names no queue is simply not a pause. Both are invisible from the outside
until someone wonders why a partition is not consumed. `rogerctl doctor`
lists them from here, with what to do about each, and notes on valid entries
that have no effect now (a pause of a queue not in the map, a partition no
live node matches); nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError, InvalidEntry
from ..schedules import Schedule
from . import keys
from .etcd import Etcd
from .partitions import PartitionMap, PartitionSpec
from .paused import queue_of


@dataclass(frozen=True)
class Finding:
    """One entry worth a look: its etcd key, what is wrong, and the way out.

    `ignored` is True for entries nodes skip (the cluster runs as if they were
    not there); False for notes on entries that are valid but have no effect now.
    """

    key: str
    """The etcd key concerned."""
    problem: str
    """What is wrong with it."""
    fix: str
    """The way out."""
    ignored: bool = True
    """True if nodes ignore the entry; False for a note with no effect."""


async def partition_entries(etcd: Etcd, namespace: str) -> tuple[PartitionMap, list[Finding]]:
    """The usable partition map, and a finding per entry nodes ignore."""
    prefix = keys.partitions_prefix(namespace)
    kvs, _ = await etcd.get_prefix(prefix)
    usable: PartitionMap = {}
    findings: list[Finding] = []
    for kv in kvs:
        name = keys.name_of(prefix, kv.key)
        try:
            usable[name] = PartitionSpec.decode(name, kv.value)
        except InvalidEntry as e:
            removable = _is_name(name)
            fix = (
                f"rogerctl partition stop {name} removes it; rogerctl partition start {name} ... replaces it"
                if removable
                else f"not a partition name: remove it with etcdctl del {kv.key!r}"
            )
            findings.append(Finding(kv.key, f"{e}; nodes ignore it", fix))
    return usable, findings


async def paused_entries(etcd: Etcd, namespace: str, partitions: PartitionMap) -> list[Finding]:
    """Paused keys nodes ignore (they name no queue), and notes on pauses of queues
    not in the map (kept on purpose: they apply when the queue is started again)."""
    prefix = keys.paused_prefix(namespace)
    kvs, _ = await etcd.get_prefix(prefix)
    findings: list[Finding] = []
    for kv in kvs:
        found = queue_of(prefix, kv.key)
        if found is None:
            findings.append(
                Finding(
                    kv.key,
                    "paused key names no partition queue (PARTITION/QUEUE); nodes ignore it",
                    f"remove it with etcdctl del {kv.key!r}",
                )
            )
            continue
        partition, queue = found
        spec = partitions.get(partition)
        if spec is None or queue not in spec.queues:
            findings.append(
                Finding(
                    kv.key,
                    f"queue {queue} of partition {partition} is paused but not in the partition map;"
                    " the pause applies when it is started again",
                    f"rogerctl queue resume {partition} {queue} drops the pause",
                    ignored=False,
                )
            )
    return findings


def unplaced_partitions(
    namespace: str, partitions: PartitionMap, matched: Callable[[PartitionSpec], bool]
) -> list[Finding]:
    """Notes on partitions limited by `nodes`/`labels` that no live node matches
    (`matched(spec)` says whether one does): valid entries whose jobs wait."""
    findings: list[Finding] = []
    for spec in partitions.values():
        if (spec.nodes or spec.labels) and not matched(spec):
            selection = [f"nodes={','.join(spec.nodes)}"] if spec.nodes else []
            selection += [f"labels={','.join(spec.labels)}"] if spec.labels else []
            findings.append(
                Finding(
                    keys.partition(namespace, spec.name),
                    f"partition {spec.name}: no live node matches its placement"
                    f" ({' '.join(selection)}); its jobs wait",
                    f"start a node it selects, or rogerctl partition start {spec.name} ..."
                    " with other --nodes/--labels",
                    ignored=False,
                )
            )
    return findings


def _is_name(name: str) -> bool:
    try:
        keys.partition("x", name)
    except ValueError:
        return False
    return True


async def schedule_entries(etcd: Etcd, namespace: str) -> list[Finding]:
    """Schedules nodes ignore: values that do not decode (bad JSON, a cron expression
    this version refuses), so they never fire."""
    prefix = keys.schedules_prefix(namespace)
    kvs, _ = await etcd.get_prefix(prefix)
    findings: list[Finding] = []
    for kv in kvs:
        name = keys.name_of(prefix, kv.key)
        try:
            Schedule.decode(kv.value)
        except ConfigError as e:
            fix = (
                f"rogerctl schedule add {name} ... replaces it; rogerctl schedule remove {name} removes it"
                if _is_name(name)
                else f"not a schedule name: remove it with etcdctl del {kv.key!r}"
            )
            findings.append(Finding(kv.key, f"{e}; nodes ignore it, it never fires", fix))
    return findings
