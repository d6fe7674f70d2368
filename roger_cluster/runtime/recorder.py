"""The history recorder: a node's job events, batched into the namespace's stream.

The worker calls `add` once per transition: one tuple appended to a list,
no I/O, no await, so recording never slows or blocks a job. A task of its
own sends what piled up as one stream message every `batch_interval`
seconds, or at once when `batch_size` events wait. The buffer is bounded:
while RabbitMQ does not take the batches, new events are dropped and
counted (`dropped`), with one log line when dropping starts and one when it
stops, rather than the node growing without bound. `stop` sends what is
left; a node killed with SIGKILL loses at most its unsent events (one
interval's worth). History is a record, not a ledger: the jobs themselves
never depend on it (docs/history.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback

from ..broker import Broker, StreamSettings
from ..config import HistoryConfig
from ..errors import BrokerError, RogerError, UnroutableJob
from ..history import EventTuple, encode_batch
from ..names import history_stream_name

log = logging.getLogger(__name__)

# The longest traceback kept in an event (its end: where it was raised).
MAX_TRACEBACK = 8000
RECONNECT_PAUSE = 2.0  # seconds between attempts to reconnect the recorder's connection


class Recorder:
    """Batches one node's job events into the history stream."""

    def __init__(self, broker: Broker, namespace: str, node: str, config: HistoryConfig) -> None:
        """`broker`: a connection of the recorder's own (it connects and reconnects it): a
        stream refusing an append can close its whole connection ("Stream not found" while
        a cluster starts the stream's members), which must not be the node's."""
        self.broker = broker
        self.node = node
        self.config = config
        self.stream = history_stream_name(namespace)
        self.settings = StreamSettings(config.max_age, config.max_bytes, config.segment_bytes)
        self.dropped = 0
        """Events dropped because RabbitMQ did not take them (a counter)."""
        self.sent = 0
        """Events sent to the stream."""
        self._events: list[EventTuple] = []
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._declared = False
        self._failing = False
        self._stopping = False
        self._connect_after = 0.0  # loop time before which no connect is tried again

    # -- the hot path

    def add(self, event: EventTuple) -> None:
        """Record one event; never blocks, never raises."""
        events = self._events
        if len(events) >= self.config.buffer:
            self.dropped += 1
            return
        events.append(event)
        if len(events) == self.config.batch_size:
            self._full.set()

    @staticmethod
    def error_fields(error: BaseException) -> tuple[str, str, str]:
        """An error's type, message and traceback, as an event carries them."""
        formatted = "".join(traceback.format_exception(error))
        return type(error).__name__, str(error), formatted[-MAX_TRACEBACK:]

    # -- lifecycle

    async def start(self) -> None:
        """Start sending batches (the stream is declared on the first send)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="history")

    async def stop(self, timeout: float = 5.0) -> None:
        """Send what is left (within `timeout`), then stop."""
        task, self._task = self._task, None
        self._stopping = True
        self._full.set()
        if task is not None:
            with contextlib.suppress(TimeoutError):  # then wait_for cancelled it
                await asyncio.wait_for(task, timeout)  # its last flush sends what is left
        if self._events:
            self._drop(len(self._events), "the node stopped before RabbitMQ took them")
            self._events = []
        await self.broker.close()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.config.batch_interval)
            self._full.clear()
            await self._flush()

    async def _flush(self) -> None:
        """Send the events waiting, a batch at a time; a batch RabbitMQ refuses is dropped."""
        while self._events:
            size = self.config.batch_size
            batch, self._events = self._events[:size], self._events[size:]
            try:
                await self._send(batch)
            except RogerError as e:
                self._drop(len(batch), str(e))
                return
            except Exception as e:  # a fault of ours: history must never stop the node
                log.exception("job history: cannot send a batch")
                self._drop(len(batch), f"{type(e).__name__}: {e}")
                return
            self.sent += len(batch)
            if self._failing:
                self._failing = False
                log.info("job history is written again (%d event(s) dropped so far)", self.dropped)

    async def _send(self, batch: list[EventTuple]) -> None:
        if not self.broker.is_connected:
            now = asyncio.get_running_loop().time()
            if now < self._connect_after:
                raise BrokerError("not connected to RabbitMQ")
            self._connect_after = now + RECONNECT_PAUSE
            await self.broker.connect()
        body = encode_batch(self.node, batch)
        if not self._declared:
            await self._declare()
        try:
            await self.broker.append(self.stream, body)
        except UnroutableJob:  # deleted by hand: declare it again next time
            self._declared = False
            raise

    async def _declare(self) -> None:
        try:
            await self.broker.declare_stream(self.stream, self.settings)
        except BrokerError as e:
            if "other settings" not in str(e):
                raise
            # Declared by nodes with other retention settings: append to it as it is.
            log.warning("history stream %s: %s; writing to it as it is", self.stream, e)
        self._declared = True

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        if not self._failing:
            self._failing = True
            log.warning(
                "job history: dropping events while RabbitMQ does not take them (%s); jobs run on", why
            )
