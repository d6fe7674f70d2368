"""rogerctl output: aligned tables for people, JSON for scripts.

Colours (see `color.py`) mark what needs a look, and only on a terminal:
headers in bold, a draining partition or a paused queue in yellow, buried
jobs and errors in red, an unknown value (`-`) dimmed. JSON is never coloured.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from .color import paint


def cell_style(header: str, text: str) -> str | None:
    """The style of one table cell, from its column and its text."""
    if text == "-":
        return "dim"
    if header == "STATE":
        return {"active": "ok", "draining": "warn"}.get(text)
    if header == "PAUSED" and text == "yes":
        return "warn"
    if header == "BURIED" and text != "0":
        return "error"
    return None


class Output:
    """Prints results in the chosen format."""

    def __init__(self, json_mode: bool, color: bool = False, error_color: bool = False) -> None:
        self.json_mode = json_mode
        self.color = color and not json_mode  # on stdout
        self.error_color = error_color  # on stderr

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], data: Any) -> None:
        """A table of rows, or `data` as JSON."""
        if self.json_mode:
            self._json(data)
            return
        cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        print(self._line([paint(h, "bold", self.color) for h in headers], list(headers), widths))
        for row in cells:
            styled = [paint(c, cell_style(h, c), self.color) for h, c in zip(headers, row, strict=True)]
            print(self._line(styled, row, widths))

    @staticmethod
    def _line(styled: list[str], plain: list[str], widths: list[int]) -> str:
        # Pad by the plain text's width: escape codes take no room on screen.
        padded = [s + " " * (w - len(p)) for s, p, w in zip(styled, plain, widths, strict=True)]
        return "  ".join(padded).rstrip()

    def message(self, text: str, data: Any) -> None:
        """A line of text, or `data` as JSON."""
        if self.json_mode:
            self._json(data)
        else:
            print(text)

    def warn(self, text: str) -> None:
        """A `rogerctl: ...` line on stderr, in any mode (red on a terminal)."""
        print(paint(f"rogerctl: {text}", "error", self.error_color), file=sys.stderr)

    def time(self, timestamp: float) -> str:
        """A timestamp as local ISO time."""
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))

    def _json(self, data: Any) -> None:
        json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
