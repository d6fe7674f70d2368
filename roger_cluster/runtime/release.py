"""Freeing keys after a job was settled: tried now, then again until it works.

A job that finished is acked whatever etcd says (a finished job must not run
again because etcd was unreachable). What it held in etcd is freed after the
settle, by a `Releaser`:

- its queue key: tried at once; if etcd does not answer, the release is
  written down in RabbitMQ, in the namespace's release queue
  (`names.release_queue_name`), which every node consumes (`ReleaseQueue`)
  and acks only once etcd took the release. So a node killed during an etcd
  outage leaves no queue key held for ever. Releases are idempotent: a key
  is deleted only while it still names the job.
- its schedule tick's record (`cluster/schedules.py`), the same way: at once,
  else through the release queue, in a version 2 body (version 1 bodies,
  queue keys, are unchanged; a node of an earlier release drops a version 2
  body with an error log, leaving a started record that only counts
  against its schedule's cap until the schedule is removed).
- its place in an execution key's count and the key's lock: tried at once,
  then again in the background. A lock goes with the node's lease anyway,
  and a count left too high is reset by the key's next holder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack

from ..broker import Broker, Delivery, KeptConsumer, RawDelivery
from ..cluster.etcd import Etcd
from ..cluster.queuekeys import release as release_queue_key
from ..cluster.schedules import release_tick
from ..codec import CONTENT_TYPE
from ..errors import DecodeError, RogerError
from ..names import release_queue_name

log = logging.getLogger(__name__)

BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
RELEASE_VERSION = 1  # a queue key
TICK_RELEASE_VERSION = 2  # a schedule's tick record
RELEASE_PREFETCH = 20

Release = Callable[[], Awaitable[object]]


def encode_release(partition: str, key: str, job_id: str) -> bytes:
    """A queue-key release as the release queue carries it."""
    fields = {"v": RELEASE_VERSION, "partition": partition, "key": key, "job": job_id}
    body: bytes = msgpack.packb(fields, use_bin_type=True)
    return body


def encode_tick_release(schedule: str, tick: int, firing: str) -> bytes:
    """A tick record's release as the release queue carries it."""
    fields = {"v": TICK_RELEASE_VERSION, "schedule": schedule, "tick": tick, "firing": firing}
    body: bytes = msgpack.packb(fields, use_bin_type=True)
    return body


def decode_release(body: bytes) -> tuple[str, str, str]:
    """(partition, key, job id) of a queue-key release; DecodeError if it is not one."""
    fields = _release_fields(body, RELEASE_VERSION)
    values = fields.get("partition"), fields.get("key"), fields.get("job")
    if not all(isinstance(v, str) and v for v in values):
        raise DecodeError("release needs string 'partition', 'key' and 'job'")
    return values  # type: ignore[return-value]


def decode_tick_release(body: bytes) -> tuple[str, int, str]:
    """(schedule, tick, firing) of a tick record's release; DecodeError if it is not one."""
    fields = _release_fields(body, TICK_RELEASE_VERSION)
    schedule, tick, firing = fields.get("schedule"), fields.get("tick"), fields.get("firing")
    if not (isinstance(schedule, str) and isinstance(firing, str) and isinstance(tick, int)):
        raise DecodeError("tick release needs string 'schedule' and 'firing' and integer 'tick'")
    return schedule, tick, firing


def _release_fields(body: bytes, version: int) -> dict[str, Any]:
    try:
        fields = msgpack.unpackb(body, raw=False)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"release is not valid msgpack: {e}") from e
    if not isinstance(fields, dict) or fields.get("v") != version:
        raise DecodeError(f"release is not a version {version} map")
    return fields


def release_version(body: bytes) -> int | None:
    """The version of a release body, None if it has none."""
    try:
        fields = msgpack.unpackb(body, raw=False)
    except Exception:  # msgpack raises several unrelated types on garbage
        return None
    version = fields.get("v") if isinstance(fields, dict) else None
    return version if isinstance(version, int) else None


async def until_done(what: str, release: Release) -> None:
    """Run `release` until it succeeds, with a backoff; logs the first failure."""
    attempt = 0
    while True:
        try:
            await release()
            if attempt:
                log.info("could %s after %d more attempt(s)", what, attempt)
            return
        except RogerError as e:
            (log.warning if attempt == 0 else log.debug)("cannot %s yet (%s); trying again", what, e)
        except Exception:  # a fault we did not map: keep it visible, keep trying
            log.exception("unexpected error trying to %s", what)
        await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
        attempt += 1


class Releaser:
    """Frees what settled jobs held in etcd, until each release succeeded."""

    def __init__(self, broker: Broker, etcd: Etcd, namespace: str) -> None:
        self.broker = broker
        self.etcd = etcd
        self.namespace = namespace
        self._pending: set[asyncio.Task[None]] = set()

    async def now(self, what: str, release: Release) -> bool:
        """Try `release` once now; if etcd fails, keep trying in the background.
        Returns whether it is done."""
        try:
            await release()
            return True
        except RogerError as e:
            log.warning("could not %s (%s); trying again in the background", what, e)
        self.later(what, release)
        return False

    def later(self, what: str, release: Release) -> None:
        """Run `release` in the background until it succeeds (or the node stops)."""
        self._spawn(until_done(what, release))

    def queue_key(self, partition: str, key: str, job_id: str) -> None:
        """Free a settled job's queue key: now, else through the release queue."""
        self._spawn(self._queue_key(partition, key, job_id))

    async def _queue_key(self, partition: str, key: str, job_id: str) -> None:
        try:
            await release_queue_key(self.etcd, self.namespace, partition, key, job_id)
            return
        except RogerError as e:
            what = f"release queue key {key} of job {job_id} in {partition}"
            log.warning("could not %s (%s); handing it to the release queue", what, e)
        body = encode_release(partition, key, job_id)
        try:
            await self.broker.publish_bytes(
                body, release_queue_name(self.namespace), {"content_type": CONTENT_TYPE}
            )
        except RogerError as e:  # RabbitMQ refused too: keep it in memory
            log.warning("could not hand the release of queue key %s to the release queue (%s)", key, e)
            await until_done(
                what, lambda: release_queue_key(self.etcd, self.namespace, partition, key, job_id)
            )

    def tick(self, schedule: str, tick: int, firing: str) -> None:
        """Delete a finished tick's record: now, else through the release queue."""
        self._spawn(self._tick(schedule, tick, firing))

    async def _tick(self, schedule: str, tick: int, firing: str) -> None:
        what = f"release tick {tick} of schedule {schedule}"
        try:
            await release_tick(self.etcd, self.namespace, schedule, tick, firing)
            return
        except RogerError as e:
            log.warning("could not %s (%s); handing it to the release queue", what, e)
        body = encode_tick_release(schedule, tick, firing)
        try:
            await self.broker.publish_bytes(
                body, release_queue_name(self.namespace), {"content_type": CONTENT_TYPE}
            )
        except RogerError as e:  # RabbitMQ refused too: keep it in memory
            log.warning("could not hand the %s to the release queue (%s)", what, e)
            await until_done(what, lambda: release_tick(self.etcd, self.namespace, schedule, tick, firing))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self, timeout: float) -> None:
        """Give pending releases up to `timeout` seconds, then stop them (logged)."""
        if not self._pending:
            return
        _, left = await asyncio.wait(set(self._pending), timeout=timeout)
        for task in left:
            task.cancel()
        if left:
            log.warning("%d key release(s) not done at shutdown", len(left))
        await asyncio.gather(*left, return_exceptions=True)


class ReleaseQueue:
    """Consumes the namespace's release queue: queue-key releases that nodes could not do.

    Each is acked once etcd took it; a node that stops or dies leaves its
    unacked releases to the other nodes. The queue is a `broker.KeptConsumer`,
    like the node's control queue: `start()` is idempotent, the node calls it
    whenever it converges, and if the queue is deleted (by hand) it is declared
    again and consumed on the same channel, so the releases under way finish
    instead of being dropped with the channel.
    """

    def __init__(self, broker: Broker, etcd: Etcd, namespace: str) -> None:
        self.etcd = etcd
        self.namespace = namespace
        self.queue_name = release_queue_name(namespace)
        self._kept = KeptConsumer(
            broker,
            self.queue_name,
            self._on_release,
            {"x-queue-type": broker.config.queue_type},
            prefetch=RELEASE_PREFETCH,
        )
        self._working: set[asyncio.Task[Any]] = set()

    @property
    def is_alive(self) -> bool:
        """Whether the release queue is being consumed."""
        return self._kept.is_alive

    def on_closed(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the consumer is lost: its channel closed, or RabbitMQ cancelled it."""
        self._kept.on_lost(callback)

    async def start(self) -> None:
        """Declare the release queue and consume it, unless already doing so. Raises BrokerError."""
        await self._kept.start()

    async def close(self) -> None:
        """Stop consuming; unacked releases go back to the queue."""
        for task in list(self._working):
            task.cancel()
        await asyncio.gather(*self._working, return_exceptions=True)
        await self._kept.close()

    def _release_of(self, body: bytes) -> tuple[str, Release]:
        """What a release body asks, and the call that does it; DecodeError if none."""
        if release_version(body) == TICK_RELEASE_VERSION:
            schedule, tick, firing = decode_tick_release(body)
            return (
                f"release tick {tick} of schedule {schedule}",
                lambda: release_tick(self.etcd, self.namespace, schedule, tick, firing),
            )
        partition, key, job_id = decode_release(body)
        return (
            f"release queue key {key} of job {job_id} in {partition}",
            lambda: release_queue_key(self.etcd, self.namespace, partition, key, job_id),
        )

    async def _on_release(self, raw: RawDelivery) -> None:
        message = Delivery.from_raw(raw)
        task = asyncio.current_task()  # aiormq's task for this delivery
        if task is not None:
            self._working.add(task)
        try:
            try:
                what, release = self._release_of(message.body)
            except DecodeError as e:
                log.error("dropping a message of %s that is not a release: %s", self.queue_name, e)
                await message.ack()
                return
            await until_done(what, release)
            await message.ack()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the channel went away: the release goes back to the queue
            log.debug("release of %s not acked: %s", message.message_id, e)
        finally:
            if task is not None:
                self._working.discard(task)
