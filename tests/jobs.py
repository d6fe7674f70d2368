"""Job classes the test nodes are allowed to run (`--jobs tests.jobs`).

Jobs record what they did in etcd-free, broker-free side channels that the
test reads back: a ledger file per test (path in the args), one line per
event, appended with O_APPEND so lines from several nodes never interleave.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from roger_cluster import Job


def record(path: str, **fields: Any) -> None:
    """Append one JSON line to the ledger at `path`."""
    line = (json.dumps(fields, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def mark(job: Job, event: str) -> None:
    """Record `event` for `job` in the ledger named by its args."""
    record(job.args["ledger"], event=event, id=job.id, node=os.environ.get("ROGER_NODE_NAME"), t=time.time())


class Record(Job):
    """Records its id and node, after sleeping `sleep` seconds (default 0)."""

    async def perform(self, args: Any) -> None:
        mark(self, "start")
        await asyncio.sleep(float(args.get("sleep", 0)))
        mark(self, "end")


class SyncRecord(Job):
    """Like Record, as a plain def running in a thread."""

    def perform(self, args: Any) -> None:
        mark(self, "start")
        time.sleep(float(args.get("sleep", 0)))
        mark(self, "end")


class OtherQueue(Record):
    """A Record job whose class sends it to the `other` queue."""

    queue = "other"


class Fails(Job):
    """Raises after recording that it ran."""

    async def perform(self, args: Any) -> None:
        mark(self, "start")
        raise RuntimeError("this job always fails")


class NotAJob:
    """Not a Job subclass: a message naming it must be buried, never run."""

    def perform(self, args: Any) -> None:  # pragma: no cover - must never run
        raise AssertionError("NotAJob ran")
