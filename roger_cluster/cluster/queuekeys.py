"""Unique jobs: at most one queued job per queue key (`Job.queue_key`).

`<ns>/queue-keys/<partition>/<key>` holds the id of the queued job. Enqueue
takes it with a transaction (create only if absent), so of two clients racing
on one key exactly one wins; the node releases it when the job leaves the
queue for good (finished, buried or cancelled), only if it still names that
job. A key held by a job that was cancelled counts as free at once, so a
cancel frees the key even before a node dequeues the cancelled job.
"""

from __future__ import annotations

from ..errors import DuplicateJob
from . import keys
from .etcd import Etcd, op_delete, op_put, unchanged, value_is


async def take(etcd: Etcd, namespace: str, partition: str, key: str, job_id: str) -> None:
    """Reserve `key` for `job_id`; DuplicateJob if another queued job holds it (not if `job_id` does)."""
    name = keys.queue_key(namespace, partition, key)
    holder = await etcd.create(name, job_id.encode())
    if holder is None:
        return
    holder_id = holder.value.decode(errors="replace")
    if holder_id == job_id:
        return  # taken already, for this very job (a retried take)
    if holder.mod_revision and await etcd.get(keys.cancellation(namespace, partition, holder_id)):
        taken, _ = await etcd.txn([unchanged(name, holder)], [op_put(name, job_id.encode())])
        if taken:
            return
    raise DuplicateJob(f"a job with queue key {key!r} is already queued in {partition} (job {holder_id})")


async def release(etcd: Etcd, namespace: str, partition: str, key: str, job_id: str) -> None:
    """Free `key` if `job_id` still holds it."""
    name = keys.queue_key(namespace, partition, key)
    await etcd.txn([value_is(name, job_id.encode())], [op_delete(name)])
