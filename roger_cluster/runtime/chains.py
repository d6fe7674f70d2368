"""Execution keys on the job path: parking keyed jobs, and the chains that run them.

- A job with an execution key that arrives in a partition queue (after a
  retry, or from an old client) is *parked* by `keyed.park`: counted, put in
  its key's waiting queue, and the key woken if nobody holds it.
- A *wake* makes the node that gets it take the key's lock (bound to its
  lease; the lock's create revision is the fencing token) and run the key's
  *chain*: a `Chain` hands the pipeline the waiting jobs one at a time
  (basic.get), each run and settled like any other delivery. Before each job
  it checks that the lock is still the one it took, so a node that lost its
  lease (paused, cut off) starts no job of the key. When none waits, it drops
  the lock in the transaction that checks the count.
- A key no job waited for in `--waiting-queue-idle` seconds loses its waiting
  queue (`sweep_idle`); the next job of the key declares it again.
- The chain holds the consumer slot of the wake that started it, so it counts
  against the queue's concurrency on that node.

Plain jobs never come here: they cost no etcd round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType

from ..broker import Broker, Consumer, Delivery
from ..cluster import keys
from ..cluster.etcd import WatchEvent
from ..cluster.execkeys import ExecKeys, Unheld, idle, orphans
from ..cluster.watch import follow_prefix
from ..config import DEFAULT_WAITING_IDLE as DEFAULT_IDLE_AFTER
from ..errors import RogerError
from ..keyed import WAKE_JOB, park, wake
from ..names import exec_waiting_queue_name
from .execution import Action, Execution, Outcome
from .release import Releaser

log = logging.getLogger(__name__)

# A counted job not in the waiting queue yet: its park is between count and publish.
# Wait for it a little (about 10 s in all), then correct the count.
MAX_EMPTY_GETS = 20
TEND_INTERVAL = 30.0  # seconds between scans for keys nobody wakes (at most)
# A scan leaves alone a key whose last job was counted in this recently: its park wakes it.
ORPHAN_GRACE = 5.0
PARKED = Outcome(Action.ACK, ending="parked")


class Chains:
    """Parks keyed jobs and starts chains for the keys this node takes."""

    def __init__(
        self,
        broker: Broker,
        exec_keys: ExecKeys,
        node: str,
        lease: Callable[[], int],
        releaser: Releaser,
        idle_after: float = DEFAULT_IDLE_AFTER,
    ) -> None:
        self.broker = broker
        self.idle_after = idle_after
        self.exec_keys = exec_keys
        self.node = node
        self._lease = lease
        self.releaser = releaser
        self.stopping = False  # set at shutdown: chains hand their keys over between jobs
        self._scan_now = asyncio.Event()

    async def admit(self, ex: Execution) -> tuple[Outcome, Chain | None]:
        """Park a keyed job, or take the key a wake is for; returns the outcome of the
        delivery and the chain to run if this node took the key. Raises RogerError."""
        message = ex.message
        assert message is not None and message.execution_key is not None
        if message.job != WAKE_JOB:
            await park(self.broker, self.exec_keys, message, ex.partition)
            return PARKED, None
        token = await self.exec_keys.acquire(
            ex.partition, message.execution_key, self._lease(), self.node.encode()
        )
        if token is None:
            return PARKED, None  # another node holds it and runs the jobs
        return PARKED, Chain(self, ex.partition, message.queue, message.execution_key, token)

    async def hand_over(self, partition: str, key: str, token: int) -> None:
        """Drop the lock taken with `token` and wake the key if jobs still wait."""
        await self.exec_keys.release(partition, key, token)
        waiting = await self.exec_keys.waiting(partition, key)
        if waiting.count > 0 and waiting.queue:
            await self._wake(partition, waiting.queue, key)

    async def _wake(self, partition: str, queue: str, key: str) -> None:
        # Without a connection (chains stopped by its loss) the scan after the
        # reconnect wakes the key: part of that event, not one warning per key.
        level = logging.WARNING if self.broker.is_connected else logging.INFO
        await wake(self.broker, partition, queue, key, level)

    def scan_soon(self) -> None:
        """Look for keys with waiting jobs and no holder now, not at the next period
        (the node calls it once it is connected to RabbitMQ again)."""
        self._scan_now.set()

    async def sweep_idle(self, unheld: list[Unheld]) -> int:
        """Delete the waiting queues of the `unheld` keys idle for `idle_after` seconds;
        returns how many.

        Safe against a park racing it: the key is claimed first (its count still
        zero, no holder), parks wait while the claim stands, and the claim goes
        with the queue, or with this node's lease if the node dies meanwhile.
        """
        deleted = 0
        for partition, key, seen in idle(unheld, self.idle_after):
            marked = await self.exec_keys.mark_deleting(partition, key, seen, self._lease())
            if marked is None:
                continue  # a job arrived, or a holder took it: not idle after all
            try:
                await self.broker.delete_queue(exec_waiting_queue_name(partition, key))
            except RogerError as e:
                log.warning("execution key %s of %s: cannot delete its idle queue (%s)", key, partition, e)
                await self.exec_keys.unmark(partition, key, marked)
                continue
            await self.exec_keys.forget(partition, key, marked)
            deleted += 1
        if deleted:
            log.info("deleted %d idle execution-key waiting queue(s)", deleted)
        return deleted

    async def tend(self) -> None:
        """Wake keys that have waiting jobs and no holder, delete idle waiting queues. Runs forever.

        A holder that died leaves waiting jobs behind when its lease expires:
        the watch on the locks sees the delete. A wake that could not be
        published leaves no event: the periodic scan finds those.
        """
        interval = min(TEND_INTERVAL, max(self.idle_after / 2, 0.5))

        async def scan(grace: float = ORPHAN_GRACE) -> list[Unheld]:
            try:
                unheld = await self.exec_keys.unheld()
            except RogerError as e:
                log.warning("cannot check execution keys: %s", e)
                return []
            for partition, key, waiting in orphans(unheld, grace):
                log.info("execution key %s of %s has waiting jobs and no holder; waking it", key, partition)
                await self._wake(partition, waiting.queue, key)
            return unheld

        async def on_reset(_: dict[str, bytes]) -> None:
            # Locks may have gone while we did not watch (our own lost lease, revoked at a
            # restart): wake every orphan, even one being parked (its holder waits for it).
            await scan(grace=0.0)

        async def on_events(events: list[WatchEvent]) -> None:
            for event in events:
                if event.value is None:  # a holder released, or died: do jobs still wait?
                    partition, _, key = keys.name_of(prefix, event.key).partition("/")
                    try:
                        waiting = await self.exec_keys.waiting(partition, key)
                    except RogerError as e:
                        log.warning("cannot check execution key %s of %s: %s", key, partition, e)
                        continue
                    if waiting.count > 0 and waiting.queue:
                        await self._wake(partition, waiting.queue, key)

        async def periodically() -> None:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._scan_now.wait(), interval)
                self._scan_now.clear()
                unheld = await scan()
                try:
                    await self.sweep_idle(unheld)
                except RogerError as e:
                    log.warning("cannot delete idle execution-key queues: %s", e)

        prefix = keys.exec_locks_prefix(self.exec_keys.namespace)
        await asyncio.gather(follow_prefix(self.exec_keys.etcd, prefix, on_reset, on_events), periodically())


class Chain:
    """The waiting jobs of one execution key, one at a time, while this node holds it.

    `async with chain: async for delivery in chain:` -- each delivery must be
    settled before the next is asked for. On leaving, a chain that did not end
    by releasing the key (shutdown, etcd or broker trouble) hands it over.
    """

    def __init__(self, chains: Chains, partition: str, queue: str, key: str, token: int) -> None:
        self.chains = chains
        self.partition = partition
        self.queue = queue  # the queue of the wake: where an undecodable waiting job is buried
        self.key = key
        self.token = token
        self._channel: Consumer | None = None
        self._waiting = ""  # the key's waiting queue
        self._done = False  # released the key, or found it taken by another holder

    async def __aenter__(self) -> Chain:
        # Declared first: a job counted in may not be published yet, and a basic.get on
        # a quorum queue still being created fails with a connection error. Declared
        # again each time: a queue deleted by hand would otherwise fail every chain of the key.
        broker = self.chains.broker
        self._waiting = await broker.declare_waiting(self.partition, self.key, again=True)
        channel = Consumer(broker, f"execution key {self.key} of {self.partition}")
        await channel.open()
        self._channel = channel
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if error is not None and not isinstance(error, asyncio.CancelledError):
            # Its channel closed with the connection: the node says that once, not per key.
            lost = self._channel is not None and not self._channel.is_open
            (log.info if lost else log.warning)(
                "execution key %s of %s: chain stopped (%s)", self.key, self.partition, error
            )
        if self._channel is not None:
            await self._channel.close()
        if not self._done:
            partition, key, token = self.partition, self.key, self.token
            self.chains.releaser.later(
                f"hand over execution key {key} of {partition}",
                lambda: self.chains.hand_over(partition, key, token),
            )

    def __aiter__(self) -> Chain:
        return self

    async def __anext__(self) -> Delivery:
        exec_keys, partition, key = self.chains.exec_keys, self.partition, self.key
        channel = self._channel
        assert channel is not None, "async with the chain first"
        empty_gets = 0
        # A closed channel: a job given back (shutdown) closed it, or the broker did.
        while not self.chains.stopping and channel.is_open:
            if not await exec_keys.holds(partition, key, self.token):
                log.warning(
                    "execution key %s of %s: this node no longer holds it (its lease expired);"
                    " leaving its jobs to the new holder",
                    key,
                    partition,
                )
                self._done = True
                break
            delivery = await channel.get(self._waiting, alone=True)
            if delivery is not None:
                return delivery
            if await exec_keys.release_if_idle(partition, key, self.token):
                self._done = True
                break
            empty_gets += 1
            if empty_gets > MAX_EMPTY_GETS:
                await self._correct()
                empty_gets = 0
                continue
            await asyncio.sleep(0.05 * empty_gets)
        raise StopAsyncIteration

    async def _correct(self) -> None:
        seen = await self.chains.exec_keys.waiting(self.partition, self.key)
        if seen.count > 0 and await self.chains.exec_keys.correct(self.partition, self.key, seen):
            log.warning(
                "execution key %s of %s: counted %d job(s) that never reached its queue; count reset",
                self.key,
                self.partition,
                seen.count,
            )
