"""A counting limit whose size can change while it is in use.

Prefetch already bounds how many deliveries a consumer holds, but while a
queue's concurrency is being changed the old consumer's jobs and the new
consumer's deliveries overlap. The slots keep "at most `concurrency` jobs of
this queue run at once on this node" true through that overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Slots:
    """Like asyncio.Semaphore, with `resize` and `wait_idle`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._waiting = 0
        self._changed = asyncio.Condition()

    async def _wait(self, predicate: Callable[[], bool]) -> None:
        self._waiting += 1
        try:
            async with self._changed:
                await self._changed.wait_for(predicate)
        finally:
            self._waiting -= 1

    async def acquire(self) -> None:
        """Take a slot, waiting while all are taken."""
        if self.in_use >= self.capacity:
            await self._wait(lambda: self.in_use < self.capacity)
        self.in_use += 1

    async def release(self) -> None:
        """Give a slot back."""
        self.in_use -= 1
        await self._notify()

    async def resize(self, capacity: int) -> None:
        """Change the capacity; waiters proceed if it grew."""
        self.capacity = capacity
        await self._notify()

    async def wait_idle(self) -> None:
        """Return once no slot is taken."""
        if self.in_use:
            await self._wait(lambda: self.in_use == 0)

    async def _notify(self) -> None:
        if self._waiting:  # the hot path takes no lock when nobody waits
            async with self._changed:
                self._changed.notify_all()
