"""Reading the ledgers test jobs write (see tests/jobs.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any


def events(ledger: Path, event: str | None = None, job_id: str | None = None) -> list[dict[str, Any]]:
    """The recorded events, oldest first, optionally of one kind and one job."""
    if not ledger.exists():
        return []
    found = [json.loads(line) for line in ledger.read_text().splitlines()]
    found = [e for e in found if (event is None or e["event"] == event) and (job_id in (None, e["id"]))]
    return sorted(found, key=lambda e: float(e["t"]))


def ended(ledger: Path) -> Counter[str]:
    """How many times each job id ran to its end."""
    return Counter(e["id"] for e in events(ledger, "end"))
