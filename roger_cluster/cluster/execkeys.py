"""Serialized execution: at most one running job per execution key, in enqueue order.

Jobs with an execution key wait in RabbitMQ, in one FIFO queue per key
(`<partition>-execution-waiting-<key>`), never in a node's memory. Two etcd
keys per execution key coordinate them:

- `<ns>/exec-keys/<p>/<key>`, the lock: exists while a node runs the key's
  jobs, bound to that node's lease, so a node that dies cannot keep it. Its
  create revision is the fencing token handed to the running jobs.
- `<ns>/exec-waiting/<p>/<key>`, the count of jobs in the waiting queue
  (published and confirmed, not yet finished), with the main queue a wake-up
  message for the key goes to.

Roger's race (the holder finds the waiting queue empty and releases, while a
new job parks behind it and waits forever) cannot happen: a job is counted
only after it is in the waiting queue, the count and the lock change only in
etcd transactions that compare the other, and so either the holder sees the
new count and runs the job, or the parker sees no lock and wakes the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import keys
from .etcd import Etcd, KeyValue, exists, op_delete, op_get, op_put, unchanged


@dataclass(frozen=True)
class Waiting:
    """The waiting count of one key, as read."""

    count: int
    queue: str
    kv: KeyValue | None

    @classmethod
    def read(cls, kv: KeyValue | None, queue: str = "") -> Waiting:
        """Parse a stored count (a missing key is zero)."""
        if kv is None:
            return cls(0, queue, None)
        try:
            data = json.loads(kv.value)
            return cls(int(data["n"]), str(data.get("queue") or queue), kv)
        except (ValueError, KeyError, TypeError):
            return cls(0, queue, kv)

    def encode(self, count: int) -> bytes:
        """The stored value for a new count."""
        return json.dumps({"n": count, "queue": self.queue}).encode()


class ExecKeys:
    """The etcd side of serialized execution for one cluster namespace."""

    def __init__(self, etcd: Etcd, namespace: str) -> None:
        self.etcd = etcd
        self.namespace = namespace

    def _keys(self, partition: str, key: str) -> tuple[str, str]:
        ns = self.namespace
        return keys.exec_lock(ns, partition, key), keys.exec_waiting(ns, partition, key)

    async def add_waiting(self, partition: str, key: str, queue: str) -> bool:
        """Count one more job in the waiting queue; returns whether the lock is held.

        Call only once the job is confirmed in the waiting queue. If the lock
        is not held, the caller must wake the key.
        """
        lock, waiting = self._keys(partition, key)
        while True:
            seen = Waiting.read(await self.etcd.get(waiting), queue)
            ok, results = await self.etcd.txn(
                [unchanged(waiting, seen.kv)], [op_put(waiting, seen.encode(seen.count + 1)), op_get(lock)]
            )
            if ok:
                return results[1] is not None

    async def acquire(self, partition: str, key: str, lease: int, holder: bytes) -> int | None:
        """Take the lock under `lease`; returns the fencing token, or None if it is held."""
        lock, _ = self._keys(partition, key)
        held = await self.etcd.create(lock, holder, lease)
        if held is not None:
            return None
        kv = await self.etcd.get(lock)
        return kv.create_revision if kv is not None else None

    async def waiting(self, partition: str, key: str) -> Waiting:
        """The current waiting count."""
        _, waiting = self._keys(partition, key)
        return Waiting.read(await self.etcd.get(waiting))

    async def finish_one(self, partition: str, key: str) -> None:
        """Count one waiting job less (it was acked: done, buried, retried or cancelled)."""
        _, waiting = self._keys(partition, key)
        while True:
            seen = Waiting.read(await self.etcd.get(waiting))
            if seen.kv is None:
                return
            ok, _ = await self.etcd.txn(
                [unchanged(waiting, seen.kv)], [op_put(waiting, seen.encode(max(seen.count - 1, 0)))]
            )
            if ok:
                return

    async def release_if_idle(self, partition: str, key: str) -> bool:
        """Drop the lock if no job waits (in one transaction); False if some do."""
        lock, waiting = self._keys(partition, key)
        while True:
            seen = Waiting.read(await self.etcd.get(waiting))
            if seen.count > 0:
                return False
            ops = [op_delete(lock)] + ([op_delete(waiting)] if seen.kv is not None else [])
            ok, _ = await self.etcd.txn([unchanged(waiting, seen.kv)], ops)
            if ok:
                return True

    async def release(self, partition: str, key: str) -> None:
        """Drop the lock whatever waits (shutdown); the caller wakes the key if needed."""
        lock, _ = self._keys(partition, key)
        await self.etcd.txn([exists(lock)], [op_delete(lock)])

    async def orphans(self) -> list[tuple[str, str, str]]:
        """Keys with waiting jobs and no lock: (partition, key id, queue) to wake."""
        locks_prefix = keys.exec_locks_prefix(self.namespace)
        waiting_prefix = keys.exec_waiting_prefix(self.namespace)
        locks, _ = await self.etcd.get_prefix(locks_prefix)
        held = {keys.name_of(locks_prefix, kv.key) for kv in locks}
        counts, _ = await self.etcd.get_prefix(waiting_prefix)
        found = []
        for kv in counts:
            name = keys.name_of(waiting_prefix, kv.key)
            waiting = Waiting.read(kv)
            if name not in held and waiting.count > 0:
                partition, _, key_id = name.partition("/")
                found.append((partition, key_id, waiting.queue))
        return found
