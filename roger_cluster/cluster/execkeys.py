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
before it is published (`keyed.park`), the count and the lock change only in
etcd transactions that compare the other, and so either the holder sees the
new count and waits for the job, or the parker sees no lock and wakes the key.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from ..errors import ClusterError
from . import keys
from .etcd import Etcd, KeyValue, created_at, op_delete, op_get, op_put, unchanged


@dataclass(frozen=True)
class Waiting:
    """The waiting count of one key, as read."""

    count: int
    queue: str
    kv: KeyValue | None
    idle_since: float | None = None  # when the last holder released an empty key
    deleting: bool = False  # a node is deleting the key's idle waiting queue
    parked_at: float | None = None  # when a job was last counted in (its park may be under way)

    @classmethod
    def read(cls, kv: KeyValue | None, queue: str = "") -> Waiting:
        """Parse a stored count (a missing key is zero)."""
        if kv is None:
            return cls(0, queue, None)
        try:
            data = json.loads(kv.value)
            idle, parked = data.get("idle"), data.get("at")
            return cls(
                int(data["n"]),
                str(data.get("queue") or queue),
                kv,
                float(idle) if isinstance(idle, (int, float)) else None,
                bool(data.get("deleting")),
                float(parked) if isinstance(parked, (int, float)) else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls(0, queue, kv)

    def encode(
        self,
        count: int,
        idle_since: float | None = None,
        deleting: bool = False,
        parked_at: float | None = None,
    ) -> bytes:
        """The stored value for a new count."""
        data: dict[str, object] = {"n": count, "queue": self.queue}
        if parked_at is not None:
            data["at"] = round(parked_at, 3)
        if idle_since is not None:
            data["idle"] = round(idle_since, 3)
        if deleting:
            data["deleting"] = True
        return json.dumps(data).encode()


Unheld = tuple[str, str, Waiting]  # (partition, key id, count) of a key no node holds


def orphans(unheld: list[Unheld], grace: float = 0.0) -> list[Unheld]:
    """Unheld keys with waiting jobs: to wake.

    A key whose last job was counted in less than `grace` seconds ago is left
    out: its park is likely under way, and wakes the key itself once published.
    """
    recent = time.time() - grace
    return [(p, k, w) for p, k, w in unheld if w.count > 0 and (w.parked_at or 0) <= recent]


def idle(unheld: list[Unheld], idle_for: float) -> list[Unheld]:
    """Unheld keys no job waited for in `idle_for` seconds: their waiting queues can go."""
    cutoff = time.time() - idle_for
    return [
        (p, k, w)
        for p, k, w in unheld
        if w.count == 0 and not w.deleting and w.idle_since is not None and w.idle_since <= cutoff
    ]


# How long a park waits for a node deleting the key's idle waiting queue.
CLEANUP_WAIT = 10.0


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

        Call before publishing the job to the waiting queue (a holder that sees
        the count waits for it). If the lock is not held, the caller must wake
        the key once the job is published. While a node deletes the key's idle
        waiting queue (milliseconds), this waits for it to finish.
        """
        lock, waiting = self._keys(partition, key)
        deadline = time.monotonic() + CLEANUP_WAIT
        while True:
            seen = Waiting.read(await self.etcd.get(waiting), queue)
            if seen.deleting:
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"execution key {key!r} of {partition}: its waiting queue is being deleted"
                    )
                await asyncio.sleep(0.05)
                continue
            ok, results = await self.etcd.txn(
                [unchanged(waiting, seen.kv)],
                [op_put(waiting, seen.encode(seen.count + 1, parked_at=time.time())), op_get(lock)],
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

    async def holds(self, partition: str, key: str, token: int) -> bool:
        """Whether the lock is still the one taken with fencing token `token`.

        A holder asks before each job: a node that lost its lease (paused, cut
        off from etcd) must not start another job of the key.
        """
        lock, _ = self._keys(partition, key)
        kv = await self.etcd.get(lock)
        return kv is not None and kv.create_revision == token

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

    async def release_if_idle(self, partition: str, key: str, token: int) -> bool:
        """Drop the lock taken with `token` if no job waits (in one transaction); False if
        some do. True as well if the lock is no longer ours (our lease expired): a
        newer holder's lock is never dropped here.

        The count stays, at zero, with the time the key went idle: an idle
        waiting queue is deleted later (`sweep_idle`), not by every holder.
        """
        lock, waiting = self._keys(partition, key)
        while True:
            seen = Waiting.read(await self.etcd.get(waiting))
            if seen.count > 0:
                return False
            ops = [op_delete(lock)]
            if not seen.deleting:
                ops.append(op_put(waiting, seen.encode(0, idle_since=time.time())))
            ok, _ = await self.etcd.txn([unchanged(waiting, seen.kv), created_at(lock, token)], ops)
            if ok or not await self.holds(partition, key, token):
                return True

    async def release(self, partition: str, key: str, token: int) -> None:
        """Drop the lock taken with `token` whatever waits (shutdown, trouble); a newer
        holder's lock stays. The caller wakes the key if jobs wait."""
        lock, _ = self._keys(partition, key)
        await self.etcd.txn([created_at(lock, token)], [op_delete(lock)])

    async def correct(self, partition: str, key: str, seen: Waiting) -> bool:
        """Set a count that stayed above zero with no job in the queue back to zero.

        Only a park whose publish failed and whose count-off failed too leaves
        such a count; False if the count changed since `seen` was read.
        """
        _, waiting = self._keys(partition, key)
        ok, _ = await self.etcd.txn([unchanged(waiting, seen.kv)], [op_put(waiting, seen.encode(0))])
        return ok

    async def unheld(self) -> list[Unheld]:
        """Every counted key no node holds: (partition, key id, its count), in two reads.
        `orphans` and `idle` pick from it what to wake and what to delete."""
        locks_prefix = keys.exec_locks_prefix(self.namespace)
        waiting_prefix = keys.exec_waiting_prefix(self.namespace)
        locks, _ = await self.etcd.get_prefix(locks_prefix)
        held = {keys.name_of(locks_prefix, kv.key) for kv in locks}
        counts, _ = await self.etcd.get_prefix(waiting_prefix)
        found = []
        for kv in counts:
            name = keys.name_of(waiting_prefix, kv.key)
            if name not in held:
                partition, _, key_id = name.partition("/")
                found.append((partition, key_id, Waiting.read(kv)))
        return found

    async def mark_deleting(self, partition: str, key: str, seen: Waiting, lease: int) -> Waiting | None:
        """Claim an idle key for deleting its waiting queue: only if its count is still
        `seen` (zero) and nobody holds it. The mark is bound to `lease`, so a node that
        dies while deleting does not block the key. Parks wait while it stands."""
        lock, waiting = self._keys(partition, key)
        ok, results = await self.etcd.txn(
            [unchanged(waiting, seen.kv), unchanged(lock, None)],
            [op_put(waiting, seen.encode(0, deleting=True), lease), op_get(waiting)],
        )
        return Waiting.read(results[1]) if ok else None

    async def forget(self, partition: str, key: str, marked: Waiting) -> None:
        """The key's waiting queue is deleted: remove its count (and with it the mark)."""
        _, waiting = self._keys(partition, key)
        await self.etcd.txn([unchanged(waiting, marked.kv)], [op_delete(waiting)])

    async def unmark(self, partition: str, key: str, marked: Waiting) -> None:
        """Deleting the waiting queue failed: the key is idle again, as before."""
        _, waiting = self._keys(partition, key)
        await self.etcd.txn([unchanged(waiting, marked.kv)], [op_put(waiting, marked.encode(0, time.time()))])
