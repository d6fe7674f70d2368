"""Moved to `roger_cluster.retry` (the configuration needs the levels too, and must not
import the runtime); these names stay importable from here."""

from __future__ import annotations

from ..retry import DEFAULT_LEVELS, check_levels, next_delay, parse_levels

__all__ = ["DEFAULT_LEVELS", "check_levels", "next_delay", "parse_levels"]
