"""Colours in rogerctl's output, only where a person reads it.

`--color auto` (the default) colours a stream only when it is a terminal,
`NO_COLOR` is not set (the no-color.org convention) and `TERM` is not `dumb`;
`--color always` and `--color never` decide alone (a flag given on the
command line wins over the environment, as no-color.org asks). JSON output
is never coloured.
"""

from __future__ import annotations

import os
from typing import TextIO

CHOICES = ("auto", "always", "never")

STYLES = {
    "ok": "32",  # green
    "warn": "33",  # yellow
    "error": "31",  # red
    "bold": "1",
    "dim": "2",
}


def wanted(choice: str, stream: TextIO) -> bool:
    """Whether to colour what goes to `stream`, for a `--color` choice."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def paint(text: str, style: str | None, on: bool) -> str:
    """`text` in `style` (a key of STYLES) when colours are `on`, else unchanged."""
    if not on or not style or not text:
        return text
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m"
