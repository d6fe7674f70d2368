"""rogerctl output: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any


class Output:
    """Prints results in the chosen format."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], data: Any) -> None:
        """A table of rows, or `data` as JSON."""
        if self.json_mode:
            self._json(data)
            return
        cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
        for row in [list(headers), *cells]:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

    def message(self, text: str, data: Any) -> None:
        """A line of text, or `data` as JSON."""
        if self.json_mode:
            self._json(data)
        else:
            print(text)

    def time(self, timestamp: float) -> str:
        """A timestamp as local ISO time."""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))

    def _json(self, data: Any) -> None:
        json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
