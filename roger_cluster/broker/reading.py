"""Reading queues: peek without loss, move and take message by message.

Each operation has a channel of its own and gets messages with basic.get,
unacked: whatever it did not ack goes back when its channel closes, so a
failure part way leaves messages in place, never loses them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from .delaying import Delaying
from .messages import Moved, Peeked, peeked

# A whole read (`read_whole`) ends when no message came for this long.
WHOLE_READ_IDLE = 1.0

# Progress of a long queue operation: (messages handled so far, messages ready when it began).
OnCount = Callable[[int, int], None]


class Reading(Delaying):
    """Peeking, moving and taking the messages of a queue."""

    async def peek(self, name: str, limit: int) -> list[Peeked]:
        """Up to `limit` messages of a queue, read without taking them.

        Each is fetched unacked and all are released together when the channel
        closes (or the connection drops), so nothing is lost or consumed. Where
        they go back is RabbitMQ's requeue: a classic queue puts them back in
        place; a quorum queue (seen on RabbitMQ 3.10) puts them at the
        back, behind the messages that were not peeked. They come back flagged
        redelivered.
        """

        async def run() -> list[Peeked]:
            found: list[Peeked] = []
            async with self._short_channel() as channel:
                queue = await channel.get_queue(name, ensure=True)
                while len(found) < limit and (message := await queue.get(fail=False)) is not None:
                    found.append(peeked(message))
            return found

        return await self._guard(run, f"reading queue {name}")

    async def read_whole(self, name: str, cap: int) -> tuple[int, list[Peeked] | None]:
        """Every message of a queue, read in one go without taking any: (how many it
        holds, the messages), or (how many, None) if it holds more than `cap`, or
        (0, []) if it does not exist.

        For the delay levels, whose order is their correctness. The messages are
        consumed on a channel of their own with a prefetch of the queue's count,
        none acked, and the channel closed: a quorum queue then serves them again
        first, in their order (seen on RabbitMQ 3.10: 20 to 3,000 messages, read
        once or twice). Taking them with basic.get instead, or giving back only
        some, reorders a quorum queue. While they are out they do not expire, so
        a read delays them by its duration (milliseconds per thousand); two reads
        of one queue at once would each see part of it.
        """

        async def run() -> tuple[int, list[Peeked] | None]:
            async with self._short_channel() as channel:
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    return 0, []  # the channel is closed by the 404
                count = int(queue.declaration_result.message_count or 0)
                if count > cap:
                    return count, None
                if count == 0:
                    return 0, []
                return count, await _consume_unacked(channel, queue, count)

        found = await self._guard(run, f"reading queue {name}")
        return found if found[1] is None else (len(found[1]), found[1])

    async def move(
        self,
        source: str,
        choose: Callable[[Peeked], Awaitable[Moved | None]],
        on_progress: OnCount | None = None,
    ) -> int:
        """Move messages out of `source` where `choose` says; returns how many moved.

        A moved message is published (and confirmed) before it is acked in
        `source`, so a failure in between can leave a copy, never lose one.
        `on_progress` hears how many messages were looked at, of how many.
        """

        async def take(message: Peeked) -> bool:
            target = await choose(message)
            if target is not None:
                await self.publish_bytes(target.body, target.routing_key, target.properties)
            return target is not None

        return await self._take_each(source, take, f"moving messages out of {source}", on_progress)

    async def drop_all(
        self, name: str, each: Callable[[Peeked], Awaitable[None]], on_progress: OnCount | None = None
    ) -> int:
        """Take every ready message of a queue, call `each` on it, then ack it; returns how many.

        Slower than `purge`, but every message is seen (to release its queue key)
        before it goes; if `each` fails, the message stays in the queue.
        """

        async def take(message: Peeked) -> bool:
            await each(message)
            return True

        return await self._take_each(name, take, f"purging {name}", on_progress)

    async def _take_each(
        self,
        name: str,
        take: Callable[[Peeked], Awaitable[bool]],
        what: str,
        on_progress: OnCount | None = None,
    ) -> int:
        """Get every ready message; ack those `take` returns True for, release the rest.

        `on_progress(seen, total)` is called after each message; `total` is the
        ready count when it began (jobs enqueued meanwhile can make `seen` pass it).
        """

        async def run() -> int:
            taken = seen = 0
            async with self._short_channel() as channel:
                queue = await channel.get_queue(name, ensure=True)
                total = int(queue.declaration_result.message_count or 0)
                while (message := await queue.get(fail=False)) is not None:
                    if await take(peeked(message)):
                        await message.ack()
                        taken += 1
                    seen += 1
                    if on_progress is not None:
                        on_progress(seen, total)
            return taken

        return await self._guard(run, what)


async def _consume_unacked(channel: AbstractChannel, queue: AbstractQueue, count: int) -> list[Peeked]:
    """The first `count` messages of `queue`, consumed unacked (a prefetch of `count`
    lets no more through); stops early when none came for `WHOLE_READ_IDLE` seconds
    (some expired meanwhile). The caller closes the channel, which gives them back."""
    found: list[Peeked] = []
    enough = asyncio.Event()
    came = asyncio.Event()

    async def take(message: AbstractIncomingMessage) -> None:
        found.append(peeked(message))
        came.set()
        if len(found) >= count:
            enough.set()

    await channel.set_qos(prefetch_count=count)
    tag = await queue.consume(take, no_ack=False)
    while not enough.is_set():
        came.clear()
        try:
            await asyncio.wait_for(came.wait(), WHOLE_READ_IDLE)
        except TimeoutError:
            break
    await queue.cancel(tag)
    return found
