"""Delays: when a delayed job is due, and the walk its message takes through the delay levels.

Pure rules, no I/O, below both users (the client's enqueue, a node's retry).
RabbitMQ holds a delayed job in a few shared queues of fixed TTLs: level k
holds a message 2**k units of `UNIT` seconds, and a message visits the levels
of the bits set in its delay, written in units (a binary walk, as
NServiceBus's delayed delivery). Fixed TTLs are what make this correct: a
queue whose messages all have the same TTL expires them in arrival order, so
none waits behind a longer one. The TTLs add up to the delay rounded *up* to a
unit, so a job never arrives before it is due (see docs/scheduling.md).
"""

from __future__ import annotations

import datetime
import math
import re
import time

from .errors import ConfigError

UNIT = 0.125  # seconds: the resolution of a delay
UNIT_MS = 125
LEVELS = 26  # levels 0..25: up to (2**26 - 1) units, about 97 days
# The longest delay accepted: the 90 days promised, plus a day for clocks and rounding.
MAX_DELAY = 91 * 24 * 3600
assert MAX_DELAY / UNIT < 2**LEVELS

Delay = int | float | datetime.timedelta
"""A delay for `Client.enqueue(..., delay=)`: seconds, or a `datetime.timedelta`."""


def level_ttl_ms(level: int) -> int:
    """How long level `level` holds a message, in milliseconds."""
    return int(2**level) * UNIT_MS


def units(seconds: float) -> int:
    """A delay in units, rounded up (0 for no delay at all)."""
    if seconds <= 0:
        return 0
    return math.ceil(round(seconds * 1000, 3) / UNIT_MS)


def levels_of(count: int) -> list[int]:
    """The levels a message of `count` units visits, highest first."""
    if not 0 <= count < 2**LEVELS:
        raise ConfigError(f"{count} units of delay do not fit the {LEVELS} delay levels")
    return [k for k in reversed(range(LEVELS)) if count >> k & 1]


def routing_key(count: int) -> str:
    """The routing key of a message of `count` units: its bits, most significant first,
    as words "0"/"1" (the delay exchanges bind on one word each)."""
    if not 0 <= count < 2**LEVELS:
        raise ConfigError(f"{count} units of delay do not fit the {LEVELS} delay levels")
    return ".".join("1" if count >> k & 1 else "0" for k in reversed(range(LEVELS)))


def binding_key(level: int) -> str:
    """The binding key that matches the messages whose bit `level` is 1."""
    return ".".join(["*"] * (LEVELS - 1 - level) + ["1", "#"])


def zero_binding_key(level: int) -> str:
    """The binding key that matches the messages whose bit `level` is 0."""
    return ".".join(["*"] * (LEVELS - 1 - level) + ["0", "#"])


def check_delay(delay: Delay) -> float:
    """A delay in seconds if it is a number or timedelta from 0 to MAX_DELAY, else ConfigError."""
    if isinstance(delay, datetime.timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, bool) or not isinstance(delay, int | float):
        raise ConfigError(f"delay must be seconds (int or float) or a timedelta, got {delay!r}")
    else:
        seconds = float(delay)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"delay must be a finite number of seconds, 0 or more, got {delay!r}")
    if seconds > MAX_DELAY:
        raise ConfigError(f"delay of {seconds:.0f} s is longer than the limit of {describe_max()}")
    return seconds


def check_at(at: datetime.datetime, now: float | None = None) -> float:
    """An aware datetime as Unix time, if it is at most MAX_DELAY ahead; ConfigError if not."""
    if not isinstance(at, datetime.datetime):
        raise ConfigError(f"at must be a datetime, got {at!r}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ConfigError(f"at must be an aware datetime (with a time zone), got {at.isoformat()}")
    stamp = at.timestamp()
    ahead = stamp - (time.time() if now is None else now)
    if ahead > MAX_DELAY:
        raise ConfigError(f"at {at.isoformat()} is further ahead than the limit of {describe_max()}")
    return stamp


def describe_max() -> str:
    """The longest delay, for error messages."""
    return f"{MAX_DELAY // 86400} days ({MAX_DELAY} s)"


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, None: 1}


def parse_duration(text: str) -> float:
    """`"90s"`, `"15m"`, `"2h"`, `"3d"`, `"1h30m"` (or plain seconds) -> seconds; ConfigError
    if malformed or longer than MAX_DELAY."""
    return check_delay(parse_span(text))


def parse_span(text: str) -> float:
    """A duration as `parse_duration` reads it, without its MAX_DELAY cap (a retention)."""
    position, total, parts = 0, 0.0, 0
    while position < len(text):
        match = _DURATION.match(text, position)
        if match is None or match.end() == position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position, parts = match.end(), parts + 1
        if match.group(2) is None:
            break  # a bare number ends the text
    if not parts or position != len(text):
        raise ConfigError(
            f"duration {text!r} is not understood: write a number and a unit, such as 90s, 15m, 2h, 3d"
        )
    return total
