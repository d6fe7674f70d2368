"""Counts executions in a file, so that a drain figure rests on jobs run, not on a queue looking empty.

Each execution appends one fixed-width line, `<index> <unix time>`, with a single `write` to a file
opened with O_APPEND: appends of one small write are atomic, so worker processes and threads
never interleave or lose lines. The file's size alone tells how many executions there were (run.py
polls it), and its lines tell which jobs ran, how often, and when the first and the last ran.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

MAX_JOBS = 10**8  # the index has 8 digits


def line(index: int) -> bytes:
    """The line that records one execution of job `index`, now."""
    return b"%08d %17.6f\n" % (index, time.time())


LINE = len(line(0))  # 27 bytes until the year 2286


class Tally:
    """The writing side: one per worker process, opened on first use (after any fork)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.pid = 0

    def record(self, index: int) -> None:
        if self.fd is None or self.pid != os.getpid():
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.pid = os.getpid()
        os.write(self.fd, line(index))


def executions(path: Path) -> int:
    """How many executions the file holds so far (lines are written whole)."""
    try:
        return path.stat().st_size // LINE
    except FileNotFoundError:
        return 0


@dataclass(frozen=True)
class Count:
    """What the file says once a drain is over."""

    executions: int
    distinct: int
    expected: int
    first: float
    last: float

    @property
    def exact(self) -> bool:
        """Every job ran exactly once: no job lost, none run twice."""
        return self.executions == self.distinct == self.expected


def read(path: Path, expected: int) -> Count:
    indices: set[int] = set()
    times: list[float] = []
    for line in path.read_bytes().splitlines():
        index, stamp = line.split()
        indices.add(int(index))
        times.append(float(stamp))
    in_range = {i for i in indices if 0 <= i < expected}
    return Count(len(times), len(in_range), expected, min(times, default=0.0), max(times, default=0.0))
