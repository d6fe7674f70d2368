"""The jobs the examples enqueue; nodes run them with `roger-node --jobs examples.jobs`.

`SendWelcome` stands for any job an app sends from a request: a plain `def` (it runs in a thread
on the node), small JSON-able args (an id, not a model object). With EXAMPLE_LEDGER set on the
node (the tests do), it also notes each run in that file, so a test can count the runs.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from roger_cluster import Job
from roger_cluster.testing.ledger import record

log = logging.getLogger(__name__)


class SendWelcome(Job):
    """Send the welcome mail of a new account (here: log it)."""

    queue = "default"
    retryable = True
    max_execution_time = 30

    def perform(self, args: Any) -> None:
        log.info("welcome mail to %s", args["email"])
        if ledger := os.environ.get("EXAMPLE_LEDGER"):
            record(ledger, event="end", id=self.id, t=time.time(), email=args["email"])
