"""Cancellations: requests in etcd, mirrored in every node's memory.

`Client.cancel` writes `<ns>/cancel/<partition>/<job_id>` under a lease, so a
request expires by itself: by default after the longest delay a job can be
enqueued with plus 7 days (98 days), so a delayed job cancelled as it was
enqueued is still cancelled when it comes due, and a job that waits in its
queue afterwards has a week more. Every node mirrors the whole
prefix from a watch, so checking "is this job cancelled?" when a job is
dequeued costs no etcd round trip, and a running job is stopped as soon as
the watch delivers the request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..delays import MAX_DELAY
from . import keys
from .etcd import Etcd, WatchEvent
from .watch import follow_prefix

log = logging.getLogger(__name__)

DEFAULT_TTL = MAX_DELAY + 7 * 24 * 3600

JobRef = tuple[str, str]  # (partition, job id)


async def request_cancel(etcd: Etcd, namespace: str, partition: str, job_id: str, ttl: int) -> None:
    """Ask the cluster to cancel a job; the request expires after `ttl` seconds."""
    key = keys.cancellation(namespace, partition, job_id)
    lease = await etcd.grant(ttl)
    await etcd.put(key, b"", lease)


class Cancellations:
    """This node's mirror of the cancellation requests."""

    def __init__(self, namespace: str) -> None:
        self._prefix = keys.cancellations_prefix(namespace)
        self._jobs: set[JobRef] = set()

    def __contains__(self, ref: object) -> bool:
        return ref in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    def _ref(self, key: str) -> JobRef | None:
        partition, sep, job_id = keys.name_of(self._prefix, key).partition("/")
        return (partition, job_id) if sep else None

    async def follow(self, etcd: Etcd, on_new: Callable[[JobRef], None]) -> None:
        """Keep the mirror current, calling `on_new` for each request. Runs forever."""

        async def reset(state: dict[str, bytes]) -> None:
            refs = {ref for key in state if (ref := self._ref(key)) is not None}
            new = refs - self._jobs
            self._jobs = refs
            for ref in new:
                on_new(ref)

        async def apply(events: list[WatchEvent]) -> None:
            for event in events:
                ref = self._ref(event.key)
                if ref is None:
                    continue
                if event.value is None:
                    self._jobs.discard(ref)
                elif ref not in self._jobs:
                    self._jobs.add(ref)
                    on_new(ref)

        await follow_prefix(etcd, self._prefix, reset, apply)
