"""Progress of long rogerctl operations (purge, retry-buried, purge-buried).

One line on stderr, rewritten in place, and only when stderr is a terminal:
a script or a pipe sees nothing of it, and stdout (tables or `--json`) never
carries progress. The line is wiped when the operation ends; the command's
own result on stdout is the summary. A drain, which can wait for minutes,
`report`s each change instead: in place on a terminal, a line each in a log.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

INTERVAL = 0.1  # seconds between redraws: a terminal need not see every message


class Progress:
    """`with Progress("moving ...") as progress:` then pass `progress` as `on_progress`."""

    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self._shown = 0  # width of the line on screen
        self._last = 0.0

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.clear()

    def __call__(self, done: int, total: int) -> None:
        """`done` of `total` handled; `total` may be passed (jobs enqueued meanwhile)."""
        now = time.monotonic()
        if now - self._last < INTERVAL and done < total:
            return
        self._last = now
        total = max(total, done)
        percent = f" ({100 * done // total}%)" if total else ""
        self.show(f"{self.what}: {done} of {total}{percent}")

    def show(self, text: str) -> None:
        """Put `text` on the progress line (on a terminal)."""
        if not self.enabled:
            return
        self.stream.write("\r" + text.ljust(self._shown))
        self.stream.flush()
        self._shown = len(text)

    def report(self, text: str) -> None:
        """A state worth a line in a log: in place on a terminal, else a line of its own."""
        if self.enabled:
            self.show(text)
        else:
            print(text, file=self.stream, flush=True)

    def clear(self) -> None:
        """Wipe the progress line, leaving the cursor at its start."""
        if self.enabled and self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0
