"""Delayed publishes: the namespace's delay levels, declared once, and publishing through them.

A delayed job (and every retry) is published to the delay exchange of the
highest bit set in its delay, with the delay in bits as the routing key
(`delays.routing_key`); RabbitMQ walks it
through the level queues of its set bits (TTL, then dead-lettered to the
exchange of the level below) into the namespace's due queue, from where the
nodes move it to its target queue (`runtime/due.py`). No consumer holds it
while it waits: it is a ready message in a durable queue all along.

The levels are shared by every partition of the namespace: 26 queues and 26
exchanges, whatever the number of partitions, jobs or delay values. They are
declared on the first delayed publish of a connection (and by every node as
it starts consuming the due queue); a publish that finds them deleted
declares them again and tries once more.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aio_pika.abc import AbstractChannel, ExchangeType
from pamqp import commands as spec

from ..codec import JobMessage, encode
from ..delays import LEVELS, binding_key, level_ttl_ms, levels_of, routing_key, units, zero_binding_key
from ..errors import BrokerError, UnroutableJob
from ..names import (
    delay_exchange_name,
    delay_queue_name,
    due_queue_name,
    is_partition_queue,
    queue_name,
    undeliverable_queue_name,
)
from .delivery import Delivery
from .messages import PERSISTENT, amqp_properties
from .publishing import Publishing

TARGET_HEADER = "x-roger-target"  # the queue a delayed message goes to once due
DUE_HEADER = "x-roger-due"  # when it is due, Unix milliseconds
REASON_HEADER = "x-roger-reason"  # why a due message could not be delivered


class Delaying(Publishing):
    """Publishing through the delay levels of a namespace."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._delays_declared: set[str] = set()  # namespaces, on this connection
        self._delays_lock = asyncio.Lock()

    async def close(self) -> None:
        """Close the connection; unacked deliveries go back to their queues."""
        self._delays_declared.clear()
        await super().close()

    def level_arguments(self, namespace: str, level: int) -> dict[str, Any]:
        """A delay level's queue: holds each message 2**level units, then dead-letters it
        to the level below (level 0: to the due queue)."""
        arguments: dict[str, Any] = {
            "x-queue-type": self.config.queue_type,
            "x-message-ttl": level_ttl_ms(level),
        }
        if level == 0:
            arguments |= {
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": due_queue_name(namespace),
            }
        else:
            arguments["x-dead-letter-exchange"] = delay_exchange_name(namespace, level - 1)
        if self.config.queue_type == "quorum":
            # RabbitMQ's default dead-lettering from quorum queues is at-most-once.
            arguments |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        return arguments

    def plain_arguments(self) -> dict[str, Any]:
        """The due and undeliverable queues: plain durable queues of the configured type."""
        return {"x-queue-type": self.config.queue_type}

    async def declare_delays(self, namespace: str, again: bool = False) -> None:
        """Declare the delay levels of `namespace` (once per connection, unless `again`)."""
        if namespace in self._delays_declared and not again:
            return
        async with self._delays_lock:  # a thousand first publishes at once declare once
            if namespace in self._delays_declared and not again:
                return

            async def run() -> None:
                async with self._short_channel() as channel:
                    await self._declare_levels(channel, namespace)

            await self._guard(run, f"declaring the delay levels of namespace {namespace}")
            self._delays_declared.add(namespace)

    async def _declare_levels(self, channel: AbstractChannel, namespace: str) -> None:
        due = await channel.declare_queue(
            due_queue_name(namespace), durable=True, arguments=self.plain_arguments()
        )
        await channel.declare_queue(
            undeliverable_queue_name(namespace), durable=True, arguments=self.plain_arguments()
        )
        below: Any = None
        for level in range(LEVELS):
            exchange = await channel.declare_exchange(
                delay_exchange_name(namespace, level), ExchangeType.TOPIC, durable=True
            )
            queue = await channel.declare_queue(
                delay_queue_name(namespace, level),
                durable=True,
                arguments=self.level_arguments(namespace, level),
            )
            await queue.bind(exchange, binding_key(level))
            if level == 0:
                await due.bind(exchange, zero_binding_key(level))
            else:
                await below.bind(exchange, zero_binding_key(level))
            below = exchange

    async def publish_delayed(
        self, message: JobMessage, partition: str, namespace: str, due: float, target: str | None = None
    ) -> None:
        """Publish a job to go to its partition queue (or `target`) at `due` (Unix time), and
        wait for the confirm. A due time already past publishes it to the queue at once."""
        target = target or queue_name(partition, message.queue)
        count = units(due - time.time())
        if count == 0:
            await self.publish(message, partition, target)
            return
        body = encode(message, self.config.max_payload_bytes)
        properties = amqp_properties(message, partition)
        properties.headers = {
            **(properties.headers or {}),
            TARGET_HEADER: target,
            DUE_HEADER: round(due * 1000),
        }
        # Straight to the exchange of its highest set bit: the levels above would only pass
        # it down, and each exchange-to-exchange hop costs (from the top, 26 topic
        # exchanges: a tenth of the publish rate, seen on RabbitMQ 3.10).
        exchange = delay_exchange_name(namespace, levels_of(count)[0])
        what = f"job {message.id} (delayed)"
        await self.declare_delays(namespace)
        try:
            await self._send_job(body, properties, routing_key(count), what, exchange)
        except BrokerError:  # a level deleted by hand: declare them again, once
            await self.declare_delays(namespace, again=True)
            await self._send_job(body, properties, routing_key(count), what, exchange)

    async def deliver_due(self, namespace: str, delivery: Delivery) -> str | None:
        """Publish a due message to its target queue, confirmed, as it came but for the
        headers of its walk; returns None, or why it went to the undeliverable queue
        instead (no valid target, or the target no longer exists). Raises BrokerError if
        RabbitMQ refused both. Straight to aiormq, as a job's enqueue: a burst of due jobs
        all go through here."""
        came = delivery.amqp_properties
        headers: dict[str, Any] = dict(came.headers or {})
        target = headers.get(TARGET_HEADER)
        if isinstance(target, bytes):
            target = target.decode(errors="replace")
        if not isinstance(target, str) or not is_partition_queue(target):
            reason = f"no valid {TARGET_HEADER} header: {target!r}"
        else:
            try:
                await self._send_job(
                    delivery.body, _republished(came, _kept_headers(headers)), target, "due job"
                )
                return None
            except UnroutableJob:
                reason = f"its target queue {target} does not exist (partition removed?)"
        parked = _republished(came, {**headers, REASON_HEADER: reason})
        name = undeliverable_queue_name(namespace)
        try:
            await self._send_job(delivery.body, parked, name, "undeliverable job")
        except UnroutableJob:  # deleted by hand
            await self.declare_delays(namespace, again=True)
            await self._send_job(delivery.body, parked, name, "undeliverable job")
        return reason

    async def publish_retry(self, message: JobMessage, partition: str, namespace: str, delay: float) -> None:
        """Publish a job to come back to its partition queue after `delay` seconds, through
        the delay levels like any delayed job; waits for the confirm."""
        await self.publish_delayed(message, partition, namespace, time.time() + delay)


def _kept_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """The headers a due message keeps in its target queue: not the walk's dead-letter
    records, nor a delivery count a peek of a level queue may have left (the target
    queue would count it towards its delivery limit), nor the target."""
    return {
        k: v
        for k, v in headers.items()
        if k != TARGET_HEADER
        and k != "x-delivery-count"
        and not k.startswith(("x-death", "x-first-death", "x-last-death"))
    }


def _republished(came: spec.Basic.Properties, headers: dict[str, Any]) -> spec.Basic.Properties:
    """The properties of a message published again: as it came, persistent, with `headers`."""
    return spec.Basic.Properties(
        content_type=came.content_type,
        delivery_mode=PERSISTENT,
        message_id=came.message_id,
        app_id=came.app_id,
        message_type=came.message_type,
        timestamp=came.timestamp,
        headers=headers,
    )
