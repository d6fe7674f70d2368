"""Run once per tick: the check a schedule's job passes before it runs.

A tick's job may be published twice (its first firer died before the tick
record showed it started, and another node fired it again); the tick's etcd
record names the one copy (`firing`) that may run. This step asks etcd for
each delivery that carries a `firing` (one read, and one transaction the
first time): the named copy runs, and marks the record started so nobody
fires the tick again; any other copy, or a copy whose record is gone
(its tick's job already finished), is acked unrun as a duplicate. When etcd
does not answer, the job waits in the delay levels like a retry and is checked again: it
never runs unchecked. Jobs without `firing` (the hot path) cost nothing.
"""

from __future__ import annotations

import logging

from ..cluster.etcd import Etcd
from ..cluster.schedules import check_firing
from ..errors import RogerError
from ..metrics import Metrics
from .execution import Action, Execution, Outcome

log = logging.getLogger(__name__)

# A tick's job that could not be checked (etcd unreachable) is checked again after this.
CHECK_AGAIN_DELAY = 5
DUPLICATE = "duplicate"  # ending of a dropped copy: settled without releasing anything
DEFERRED = "deferred"  # ending of a job sent to wait for its check: not gone either


class TickGate:
    """Lets through only the copy of a tick's job that its record names."""

    def __init__(self, etcd: Etcd, namespace: str, node: str) -> None:
        self.etcd = etcd
        self.namespace = namespace
        self.node = node
        self.metrics: Metrics | None = None
        self.duplicates = 0

    async def admit(self, ex: Execution) -> Outcome | None:
        """None if the job may run; else how to settle it unrun."""
        message = ex.message
        if message is None or message.firing is None or message.schedule is None:
            return None
        if message.scheduled_at is None:
            return None
        tick = int(message.scheduled_at)
        try:
            ok = await check_firing(
                self.etcd, self.namespace, message.schedule, tick, message.firing, self.node
            )
        except RogerError as e:
            log.warning(
                "cannot check that job %s is the copy of its tick to run (%s); checking again in %ds",
                message.id,
                e,
                CHECK_AGAIN_DELAY,
                extra=ex.log_fields(),
            )
            return Outcome(Action.RETRY, ending=DEFERRED, message=message, delay=CHECK_AGAIN_DELAY)
        if ok:
            return None
        self.duplicates += 1
        if self.metrics is not None:
            self.metrics.schedule(message.schedule, "duplicate")
        log.info(
            "dropping job %s of schedule %s unrun: another copy of its tick is the one that runs,"
            " or it already ran",
            message.id,
            message.schedule,
            extra=ex.log_fields(),
        )
        return Outcome(Action.ACK, ending=DUPLICATE)
