"""Section 1, the ceiling: bare aio-pika doing the same broker work as roger_cluster, nothing more.

- Publishing: the same encoded bodies with the same properties (`broker.amqp_message`), mandatory,
  persistent, publisher confirms on, up to `ENQUEUE_WINDOW` confirms in flight from a pool of
  senders (what `Client.enqueue_many` does, minus building the job and encoding it); or one
  confirmed publish at a time (window 1).
- Consuming: `bare.py` in its own process, with the same prefetch, acking each delivery on its own
  or in batches (`ack(multiple=True)`, as our nodes do). It records each delivery in a tally file
  like every other drain, so its clock is the same: first to last execution.
"""

from __future__ import annotations

import asyncio
import sys

from roger_cluster.broker import amqp_message
from roger_cluster.codec import JobMessage, encode
from roger_cluster.names import queue_name

from .jobs import Count
from .rig import QUEUE, SETTLE, Measure, Rig, child_env, process_cpu, timed

START_TIMEOUT = 30.0


async def publish(rig: Rig, partition: str, count: int, window: int) -> Measure:
    """Publish `count` pre-encoded Count jobs with up to `window` confirms in flight."""
    messages = [JobMessage.from_job(Count(i), QUEUE) for i in range(count)]
    pending = iter([(m, encode(m)) for m in messages])
    routing_key = queue_name(partition, QUEUE)
    channel = await rig.amqp.channel(publisher_confirms=True, on_return_raises=True)

    async def sender() -> None:
        for message, body in pending:
            amqp = amqp_message(message, body, partition)  # the same properties as ours
            await channel.default_exchange.publish(amqp, routing_key=routing_key, mandatory=True)

    try:
        return await timed(count, lambda: asyncio.gather(*(sender() for _ in range(min(window, count)))))
    finally:
        await channel.close()


async def drain(rig: Rig, partition: str, ack: str) -> Measure:
    """Drain the partition's queue with a bare consumer process acking `each` or in a `batch`."""
    prefetch = rig.options.prefetch
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.suite.bare", queue_name(partition, QUEUE),
        "--prefetch", str(prefetch),
        "--tally", str(rig.tally(partition)), "--ack", ack, "--batch", str(max(1, prefetch // 2)),
        stdout=asyncio.subprocess.PIPE, env=child_env(rig.options),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        if not line.startswith(b"consume-ok "):
            raise RuntimeError(f"bare consumer did not start: {line!r}")
        cpu = process_cpu(process.pid)

        def dead() -> str | None:
            return None if process.returncode is None else f"bare consumer exited ({process.returncode})"

        await rig.wait_count(partition, dead)
        cpu = process_cpu(process.pid) - cpu
        await asyncio.sleep(SETTLE)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 10)
    left = await rig.ready(partition)
    rate = rig.counted(f"bare consumer, ack {ack}, {partition}", partition, left, distinct=False)
    return Measure(rate, cpu / rig.options.jobs * 1e6)
