"""Publishing: jobs, waiting jobs, burials, raw republishes (delayed ones: `delaying.py`).

Every publish is mandatory and waits for the publisher confirm: a job is only
reported enqueued once RabbitMQ has it, and a job that no queue would take is
an error for the caller (`UnroutableJob`), never a silent drop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
from aio_pika.abc import DeliveryMode
from pamqp import commands as spec

from ..codec import JobMessage, encode
from ..errors import BrokerError, UnroutableJob
from ..names import buried_queue_name, exec_waiting_queue_name, queue_name
from .messages import amqp_properties
from .topology import Topology

log = logging.getLogger(__name__)

WAITING_PUBLISH_ATTEMPTS = 5


class Publishing(Topology):
    """Confirmed, mandatory publishes over the connection's publish channel."""

    async def publish(self, message: JobMessage, partition: str, routing_key: str | None = None) -> None:
        """Publish one job to its partition queue (or `routing_key`) and wait for the confirm."""
        body = encode(message, self.config.max_payload_bytes)
        target = routing_key or queue_name(partition, message.queue)
        await self._send_job(body, amqp_properties(message, partition), target, f"job {message.id}")

    async def publish_waiting(self, message: JobMessage, partition: str) -> None:
        """Publish a job with an execution key to its key's waiting queue (declared on demand)."""
        assert message.execution_key is not None
        name = exec_waiting_queue_name(partition, message.execution_key)
        for attempt in range(1, WAITING_PUBLISH_ATTEMPTS + 1):
            await self.declare_waiting(partition, message.execution_key)
            try:
                await self.publish(message, partition, name)
                return
            except UnroutableJob:  # deleted by an operator: declare it again
                self._declared.discard(name)
                if attempt == WAITING_PUBLISH_ATTEMPTS:
                    raise
            except BrokerError:
                # A quorum queue declared by several clients at once can nack the
                # first publishes; a nacked message is not queued, so send it again.
                if attempt == WAITING_PUBLISH_ATTEMPTS:
                    raise
                await asyncio.sleep(0.05 * attempt)

    async def publish_bytes(self, body: bytes, routing_key: str, properties: dict[str, Any]) -> None:
        """Publish a body as it came (a message we could not run) with its properties."""
        amqp = aio_pika.Message(body, **{**properties, "delivery_mode": DeliveryMode.PERSISTENT})
        await self._send(amqp, routing_key, "message")

    async def bury(self, body: bytes, partition: str, queue: str, properties: dict[str, Any]) -> None:
        """Publish a message to the buried queue of `partition`-`queue`, declaring the
        partition's queues again if it was deleted (nothing consumes a buried queue, so
        nothing else notices)."""
        name = buried_queue_name(partition, queue)
        try:
            await self.publish_bytes(body, name, properties)
        except UnroutableJob:
            log.warning("buried queue %s was deleted; declaring it again", name)
            await self.declare(partition, queue)
            await self.publish_bytes(body, name, properties)

    async def _send(self, amqp: aio_pika.Message, routing_key: str, what: str) -> None:
        async def run() -> None:
            channel = await self._publisher()
            await channel.default_exchange.publish(amqp, routing_key=routing_key, mandatory=True)

        await self._guard(run, f"publishing {what} to {routing_key}")

    async def _send_job(
        self,
        body: bytes,
        properties: spec.Basic.Properties,
        routing_key: str,
        what: str,
        exchange: str = "",
    ) -> None:
        """`_send` for a job's own message, straight to aiormq (the hot path of every enqueue)."""

        async def run() -> None:
            channel = await (await self._publisher()).get_underlay_channel()
            await channel.basic_publish(
                body, exchange=exchange, routing_key=routing_key, properties=properties, mandatory=True
            )

        await self._guard(run, f"publishing {what} to {routing_key}")
