"""A ledger: the file test jobs record what they did in, read back by the test.

Why it exists: a job runs in a `roger-node` process, so the test cannot see
its effects in memory. A job appends one JSON line per event (`record`),
with O_APPEND so lines from several nodes never interleave; the test reads
them back (`events`, `ended`). Nothing goes through etcd or RabbitMQ, so a
ledger stays true while a test breaks those. The `ledger` fixture gives each
test a path of its own; pass it to jobs in their args.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["ended", "events", "record"]


def record(path: str, **fields: Any) -> None:
    """Append one JSON line to the ledger at `path` (in a job; any node)."""
    line = (json.dumps(fields, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def events(ledger: Path, event: str | None = None, job_id: str | None = None) -> list[dict[str, Any]]:
    """The recorded events, oldest first (by field `t`), optionally of one kind and one job.

    Reads the fields `event`, `id` and `t` (a `time.time()`) that jobs record.
    """
    if not ledger.exists():
        return []
    found = [json.loads(line) for line in ledger.read_text().splitlines()]
    found = [e for e in found if (event is None or e["event"] == event) and (job_id in (None, e["id"]))]
    return sorted(found, key=lambda e: float(e["t"]))


def ended(ledger: Path) -> Counter[str]:
    """How many times each job id ran to its end (its "end" events)."""
    return Counter(e["id"] for e in events(ledger, "end"))
