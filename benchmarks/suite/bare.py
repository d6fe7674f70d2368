"""The drain ceiling: a bare aio-pika consumer, run in its own process by `ceiling.py`.

It does the least a consumer that loses nothing can do: record the delivery in the tally file (the
line every drained job writes, ours and the peers', so every drain is counted and timed alike) and
ack it, either each on its own (`--ack each`) or, like our nodes, one `ack(multiple=True)` per run
of `--batch` deliveries, flushed within 5 ms when fewer are waiting (`--ack batch`). It decodes
nothing and runs no job. It prints `consume-ok <unix time>` once consuming, then waits to be killed
(or exits by itself after LIFETIME, should its parent forget it).

    ROGER_AMQP_URL=... python -m benchmarks.suite.bare QUEUE --prefetch 100 --tally FILE [--ack batch]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from benchmarks.peers import tally

LIFETIME = 900.0
FLUSH_DELAY = 0.005  # as roger_cluster.runtime.acks.DELAY


class BatchAcker:
    """In-order deliveries, so the last one seen covers every one before it."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.last: AbstractIncomingMessage | None = None
        self.waiting = 0
        self.timer: asyncio.TimerHandle | None = None

    async def done(self, message: AbstractIncomingMessage) -> None:
        self.last, self.waiting = message, self.waiting + 1
        if self.waiting >= self.batch:
            await self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush_soon)

    def _flush_soon(self) -> None:
        self.timer = None
        asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        message, self.last, self.waiting = self.last, None, 0
        if message is not None:
            await message.ack(multiple=True)


async def consume(args: argparse.Namespace) -> None:
    connection = await aio_pika.connect(os.environ["ROGER_AMQP_URL"])  # not in argv: it may hold a password
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=args.prefetch)
    queue = await channel.get_queue(args.queue, ensure=False)
    fd = os.open(args.tally, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    acker = BatchAcker(args.batch)
    received = 0

    async def ack_each(message: AbstractIncomingMessage) -> None:
        nonlocal received
        os.write(fd, tally.line(received))
        received += 1
        await message.ack()

    async def ack_batched(message: AbstractIncomingMessage) -> None:
        nonlocal received
        os.write(fd, tally.line(received))
        received += 1
        await acker.done(message)

    await queue.consume(ack_each if args.ack == "each" else ack_batched)
    print(f"consume-ok {time.time():.6f}", flush=True)
    await asyncio.sleep(LIFETIME)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("queue")
    p.add_argument("--prefetch", type=int, required=True)
    p.add_argument("--tally", required=True)
    p.add_argument("--ack", choices=("each", "batch"), default="each")
    p.add_argument("--batch", type=int, default=50)
    asyncio.run(consume(p.parse_args()))


if __name__ == "__main__":
    main()
