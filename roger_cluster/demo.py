"""Demo jobs shipped with roger_cluster, for the local cluster and the Compose demo.

Run a node with `--jobs roger_cluster.demo` to allow them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from .job import Job

log = logging.getLogger(__name__)


class Sleep(Job):
    """Sleeps `seconds` (default 0.1) and logs where it ran."""

    async def perform(self, args: Any) -> None:
        seconds = float((args or {}).get("seconds", 0.1))
        await asyncio.sleep(seconds)
        log.info("demo job %s slept %.2fs on %s", self.id, seconds, socket.gethostname())


class Hello(Job):
    """Logs a greeting; a plain `def`, so it runs in a worker thread."""

    def perform(self, args: Any) -> None:
        name = (args or {}).get("name", "world")
        log.info("demo job %s says hello to %s", self.id, name)


class Noop(Job):
    """Does nothing: the benchmark's job."""

    async def perform(self, args: Any) -> None:
        return None


class NoopSync(Job):
    """Does nothing in a plain `def`: the benchmark's sync job (it runs in a worker thread)."""

    def perform(self, args: Any) -> None:
        return None
