"""Every etcd key roger_cluster uses, built by functions, under one namespace.

Several clusters can share one etcd: each owns the prefix `<namespace>/`.
The layout is documented in `docs/etcd-keys.md`.
"""

from __future__ import annotations

from ..names import check_job_id, check_node, check_partition, check_queue, check_schedule, key_id


def _root(namespace: str) -> str:
    return namespace.strip("/")


def nodes_prefix(namespace: str) -> str:
    """Prefix of the node registrations."""
    return f"{_root(namespace)}/nodes/"


def node(namespace: str, name: str) -> str:
    """A node's registration, bound to the node's lease."""
    return nodes_prefix(namespace) + check_node(name)


def partitions_prefix(namespace: str) -> str:
    """Prefix of the partition map."""
    return f"{_root(namespace)}/partitions/"


def partition(namespace: str, name: str) -> str:
    """One partition of the map: its queues and their concurrency."""
    return partitions_prefix(namespace) + check_partition(name)


def cancellations_prefix(namespace: str) -> str:
    """Prefix of the cancellation requests."""
    return f"{_root(namespace)}/cancel/"


def cancellation(namespace: str, partition: str, job_id: str) -> str:
    """A request to cancel one job, bound to a lease so it expires."""
    return f"{cancellations_prefix(namespace)}{check_partition(partition)}/{check_job_id(job_id)}"


def queue_key(namespace: str, partition: str, key: str) -> str:
    """Held while a job with this queue key is queued (value: the job id)."""
    return f"{_root(namespace)}/queue-keys/{check_partition(partition)}/{key_id(key)}"


def exec_lock(namespace: str, partition: str, key: str) -> str:
    """Held, under the running node's lease, while a job with this execution key runs."""
    return f"{exec_locks_prefix(namespace)}{check_partition(partition)}/{key_id(key)}"


def exec_locks_prefix(namespace: str) -> str:
    """Prefix of the execution locks."""
    return f"{_root(namespace)}/exec-keys/"


def exec_waiting(namespace: str, partition: str, key: str) -> str:
    """How many jobs of an execution key wait in its waiting queue."""
    return f"{exec_waiting_prefix(namespace)}{check_partition(partition)}/{key_id(key)}"


def exec_waiting_prefix(namespace: str) -> str:
    """Prefix of the execution-key waiting counts."""
    return f"{_root(namespace)}/exec-waiting/"


def paused_prefix(namespace: str) -> str:
    """Prefix of the paused queues."""
    return f"{_root(namespace)}/paused/"


def paused(namespace: str, partition: str, queue: str) -> str:
    """Present while a partition queue is paused: no node consumes it."""
    return f"{paused_prefix(namespace)}{check_partition(partition)}/{check_queue(queue)}"


def drained_prefix(namespace: str, partition: str) -> str:
    """Prefix of the nodes that finished draining a partition."""
    return f"{_root(namespace)}/drained/{check_partition(partition)}/"


def drained(namespace: str, partition: str, node: str) -> str:
    """Written by a node, under its lease, once it runs no job of a draining partition."""
    return drained_prefix(namespace, partition) + check_node(node)


def schedules_prefix(namespace: str) -> str:
    """Prefix of the recurring schedules."""
    return f"{_root(namespace)}/schedules/"


def schedule(namespace: str, name: str) -> str:
    """One recurring schedule: what it fires, when, and whether it is paused."""
    return schedules_prefix(namespace) + check_schedule(name)


def schedule_states_prefix(namespace: str) -> str:
    """Prefix of the schedules' states."""
    return f"{_root(namespace)}/schedule-state/"


def schedule_state(namespace: str, name: str) -> str:
    """A schedule's last claimed tick, who claimed it, and its counters."""
    return schedule_states_prefix(namespace) + check_schedule(name)


def schedule_ticks_prefix(namespace: str, name: str | None = None) -> str:
    """Prefix of the tick records (of one schedule, given its name)."""
    root = f"{_root(namespace)}/schedule-ticks/"
    return root if name is None else f"{root}{check_schedule(name)}/"


def schedule_tick(namespace: str, name: str, tick_label: str) -> str:
    """One claimed tick whose job has not finished: which copy of it may run."""
    return schedule_ticks_prefix(namespace, name) + tick_label


def name_of(prefix: str, key: str) -> str:
    """The last part of `key` under `prefix`."""
    return key[len(prefix) :]
