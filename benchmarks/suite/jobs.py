"""The jobs the suite's nodes run (`--jobs benchmarks.suite.jobs`), and how they leave their trace.

A benchmark figure must rest on jobs that ran, not on a queue that looks empty, and recording must
not disturb what is measured: no etcd, no broker, no log line. So each job appends one line to a
file of its partition in the folder named by `ROGER_BENCH_DIR`, with a single `write` to a file
opened with O_APPEND (atomic for one small write: nodes and threads never interleave lines).

- `Count` / `CountSync`: the drain's no-op job, async and plain `def` (a worker thread). The line
  is the one the peers' no-op tasks write (`peers/tally.py`), so every drain is counted and timed
  the same way: (executions - 1) / (last - first).
- `Stamp`: records its enqueue time (set by the client) and the time `perform` started, and on
  which node: end-to-end latency.
- `Hold`: a `Stamp` that then sleeps; the node running it is the one killed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.peers import tally
from roger_cluster import Job

DIR_ENV = "ROGER_BENCH_DIR"

_files: dict[tuple[str, str], int] = {}
_opening = threading.Lock()


def tally_path(folder: Path, partition: str) -> Path:
    """Where the jobs of `partition` record their executions."""
    return folder / f"{partition}.tally"


def stamps_path(folder: Path, partition: str) -> Path:
    """Where `Stamp` and `Hold` jobs of `partition` record when they started."""
    return folder / f"{partition}.stamps"


def _append(kind: str, job: Job, line: bytes) -> None:
    """One atomic append to the `kind` file of the job's partition. Each file is opened once
    per node process (sync jobs' threads share it), so a record costs a dict lookup and a write."""
    key = (kind, job.context.partition)
    fd = _files.get(key)
    if fd is None:
        with _opening:
            fd = _files.get(key)
            if fd is None:
                path = (tally_path if kind == "tally" else stamps_path)(_folder(), key[1])
                fd = _files[key] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, line)


def _folder() -> Path:
    folder = os.environ.get(DIR_ENV)
    if not folder:
        raise RuntimeError(f"{DIR_ENV} is not set: run these jobs from the benchmark suite")
    return Path(folder)


class Count(Job):
    """Records its execution (args: the job's index) and nothing else."""

    async def perform(self, args: Any) -> None:
        _append("tally", self, tally.line(args))


class CountSync(Job):
    """`Count` as a plain `def`: the node runs it in a worker thread."""

    def perform(self, args: Any) -> None:
        _append("tally", self, tally.line(args))


@dataclass(frozen=True)
class Start:
    """One line of a stamps file: job `index` started at `started` on `node`."""

    index: int
    enqueued: float
    started: float
    node: str


def _stamp(job: Job, index: int) -> None:
    started = time.time()  # first: what is measured ends here
    line = f"{index} {job.context.enqueued_at:.6f} {started:.6f} {job.context.node}\n"
    _append("stamps", job, line.encode())


def read_stamps(path: Path) -> list[Start]:
    """Every start recorded so far (a line is written whole or not at all)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    starts = []
    for line in text.splitlines():
        index, enqueued, started, node = line.split()
        starts.append(Start(int(index), float(enqueued), float(started), node))
    return starts


class Stamp(Job):
    """Records when it was enqueued and when it started (args: its index)."""

    async def perform(self, args: Any) -> None:
        _stamp(self, int(args))


class DueStamp(Job):
    """Records when it was due (`context.scheduled_at`, in the stamp's enqueue field) and when it
    started (args: its index)."""

    async def perform(self, args: Any) -> None:
        started = time.time()
        assert self.context.scheduled_at is not None
        line = f"{int(args)} {self.context.scheduled_at:.6f} {started:.6f} {self.context.node}\n"
        _append("stamps", self, line.encode())


class Hold(Job):
    """Records its start like `Stamp`, then holds its slot (args: [index, seconds])."""

    async def perform(self, args: Any) -> None:
        index, seconds = args
        _stamp(self, int(index))
        await asyncio.sleep(float(seconds))
