"""Every etcd key roger_cluster uses, built by functions, under one namespace.

Several clusters can share one etcd: each owns the prefix `<namespace>/`.
The layout is documented in `docs/etcd-keys.md`.
"""

from __future__ import annotations

from ..names import check_job_id, check_node, check_partition


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


def name_of(prefix: str, key: str) -> str:
    """The last part of `key` under `prefix`."""
    return key[len(prefix) :]
