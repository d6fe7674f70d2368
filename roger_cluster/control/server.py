"""The node side of control: answering requests on this node's control queue.

The queue `roger.<namespace>.control.<node>` (`names.control_queue_name`) is
exclusive: it lives and dies with the node's connection, no other connection
can consume it. It is a `broker.KeptConsumer`: declared again after every
reconnect, and after RabbitMQ cancelled its consumer (the queue deleted by
hand). Handlers are small and read-only; one that fails produces an error
reply, never a crash, and a node that does not know an op answers with an
error instead of staying silent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..broker import Broker, Delivery, KeptConsumer, RawDelivery
from ..codec import CONTENT_TYPE
from ..errors import BrokerError, DecodeError
from ..names import control_queue_name
from .wire import PING, RUNNING, decode_request, encode_reply

if TYPE_CHECKING:  # the client side (this package's __init__) must not import the runtime
    from ..runtime.worker import Worker

log = logging.getLogger(__name__)

# A reply to a client that is gone is dropped by RabbitMQ; never wait long on it.
REPLY_PUBLISH_TIMEOUT = 5.0

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]


class ControlServer:
    """Answers control requests on this node's control queue.

    `start()` is idempotent and replayable: the node calls it whenever it
    converges, so after a reconnect (or a lost channel) the queue is declared
    and consumed again.
    """

    def __init__(self, broker: Broker, namespace: str, node: str, handlers: Mapping[str, Handler]) -> None:
        self.broker = broker
        self.node = node
        self.queue_name = control_queue_name(namespace, node)
        self.handlers = dict(handlers)
        # Requests are not acked: nothing is lost with a channel.
        self._kept = KeptConsumer(
            broker,
            self.queue_name,
            self._on_request,
            {"x-queue-type": "classic"},
            no_ack=True,
            exclusive=True,
        )

    @property
    def is_alive(self) -> bool:
        """Whether the control queue is being consumed."""
        return self._kept.is_alive

    def on_closed(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the consumer is lost: its channel closed, or RabbitMQ cancelled it."""
        self._kept.on_lost(callback)

    async def start(self) -> None:
        """Declare the control queue and consume it, unless already doing so. Raises BrokerError."""
        if self.is_alive:
            return
        await self._kept.start()
        log.info("answering control requests on %s", self.queue_name)

    async def close(self) -> None:
        """Stop answering; the queue goes with the connection (or now, being auto-delete)."""
        await self._kept.close()

    async def _on_request(self, raw: RawDelivery) -> None:
        request = Delivery.from_raw(raw)
        body = await self.answer(request.body)
        consumer = self._kept.consumer
        if not request.reply_to or consumer is None:
            return
        properties = {"content_type": CONTENT_TYPE, "correlation_id": request.correlation_id}
        try:
            await asyncio.wait_for(
                consumer.publish(body, request.reply_to, properties, mandatory=False), REPLY_PUBLISH_TIMEOUT
            )
        except (BrokerError, TimeoutError) as e:  # the client is gone, or the channel with it
            log.debug("could not answer control request %s: %s", request.correlation_id, e)

    async def answer(self, body: bytes) -> bytes:
        """The reply body to a request body."""
        try:
            op, args = decode_request(body)
        except DecodeError as e:
            return encode_reply(self.node, error=str(e))
        handler = self.handlers.get(op)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return encode_reply(self.node, error=f"unknown op {op!r} (this node knows {known})")
        try:
            return encode_reply(self.node, await handler(args))
        except Exception as e:  # a failing handler is an answer, not a crash
            log.exception("control op %s failed", op)
            return encode_reply(self.node, error=f"{op} failed: {type(e).__name__}: {e}")


def worker_handlers(worker: Worker) -> dict[str, Handler]:
    """The ops a node answers from its worker."""

    async def ping(args: Mapping[str, Any]) -> dict[str, Any]:
        return {"time": time.time()}

    async def running(args: Mapping[str, Any]) -> list[dict[str, Any]]:
        partition = args.get("partition")
        return running_jobs(worker, partition if isinstance(partition, str) else None)

    return {PING: ping, RUNNING: running}


def running_jobs(worker: Worker, partition: str | None = None) -> list[dict[str, Any]]:
    """The jobs running on this node now (of `partition` if given), as wire maps
    (`wire.RunningJob.from_wire` reads them back).

    The start time is read from the monotonic clock the worker keeps, brought
    to wall-clock time here, so `elapsed` is exact even if the clock jumps.
    """
    now, now_monotonic = time.time(), time.monotonic()
    found = []
    for (job_partition, job_id), running in list(worker.running.items()):
        if partition is not None and job_partition != partition:
            continue
        context = running.job.context if running.job.has_context else None
        elapsed = max(0.0, now_monotonic - running.started)
        found.append(
            {
                "id": job_id,
                "job": running.job.path(),
                "partition": job_partition,
                "queue": context.queue if context else None,
                "node": worker.node,
                "retry_count": context.retry_count if context else 0,
                "enqueued_at": context.enqueued_at if context else None,
                "started_at": now - elapsed,
                "elapsed": elapsed,
            }
        )
    return found
