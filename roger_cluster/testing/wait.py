"""Wait for a condition instead of sleeping: `eventually(check)`, and `equals` to check with."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    check: Callable[[], Awaitable[T]], timeout: float = ..., interval: float = ..., message: str = ...
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T], timeout: float = ..., interval: float = ..., message: str = ...
) -> T: ...


async def eventually(
    check: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
) -> Any:
    """Call `check` until it returns a truthy value and return that value.

    An AssertionError or a falsy result means "not yet"; after `timeout`
    seconds the last AssertionError (or a new one) is raised.
    """
    deadline = time.monotonic() + timeout
    last: AssertionError | None = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            last = None
        except AssertionError as e:
            last = e
        if time.monotonic() >= deadline:
            detail = f": {last}" if last else ""
            raise AssertionError(f"not true within {timeout}s {message}{detail}") from last
        await asyncio.sleep(interval)


async def equals(value: Awaitable[T], expected: T) -> bool:
    """Whether `value` comes out as `expected`; for `eventually`, where the
    AssertionError says what it was instead."""
    actual = await value
    assert actual == expected
    return True
