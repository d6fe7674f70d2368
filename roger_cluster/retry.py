"""Retry levels: how long a failed job waits before its next attempt.

Pure policy, no I/O, below both its users: the configuration checks levels
(`check_levels`, `DEFAULT_LEVELS`) and the worker asks `next_delay`, then the
job waits that long in the namespace's delay levels (RabbitMQ holds it, then a
node moves it back to its main queue: `broker/delaying.py`) or is buried when
the levels ran out.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ConfigError

DEFAULT_LEVELS: tuple[int, ...] = (1, 3, 5, 10, 20, 35, 60, 100, 200, 400, 1000, 1800)


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    """The levels as a tuple if each is a whole number of seconds from 1 to 7 days."""
    result = tuple(levels)
    for level in result:
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 7 * 24 * 3600:
            raise ConfigError(f"retry level {level!r} must be whole seconds from 1 to 604800")
    return result


def parse_levels(text: str) -> tuple[int, ...]:
    """`"1,3,5"` -> (1, 3, 5); ConfigError if malformed."""
    try:
        return check_levels([int(part) for part in text.split(",") if part.strip()])
    except ValueError:
        raise ConfigError(f"retry levels {text!r} must be comma-separated whole seconds") from None


def next_delay(levels: Sequence[int], retry_count: int) -> int | None:
    """Seconds before attempt `retry_count + 1`, or None when the job should be buried."""
    return levels[retry_count] if retry_count < len(levels) else None
