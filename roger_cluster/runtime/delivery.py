"""A delivery as the runtime needs it: body, tag, ack and give-back, and properties for a republish.

The queue consumers take deliveries straight from aiormq, below aio-pika: aio-pika
builds an `IncomingMessage` (a dozen guarded attribute sets) and one more task for
every delivery, which cost a node about a fifth of its time draining no-op jobs
(see docs/performance.md). Messages got through aio-pika (the execution-key
chains take theirs with `basic.get`) are wrapped the same way, so settling has
one shape to deal with.
"""

from __future__ import annotations

from typing import Any

import aiormq.abc
from aio_pika.abc import AbstractIncomingMessage

from ..broker import kept_properties, properties_of


class Delivery:
    """One unacked delivery on one channel."""

    __slots__ = ("body", "delivery_tag", "_channel", "_source", "_alone")

    def __init__(
        self,
        body: bytes,
        delivery_tag: int,
        channel: aiormq.abc.AbstractChannel,
        source: aiormq.abc.DeliveredMessage | AbstractIncomingMessage,
        alone: bool = False,
    ) -> None:
        self.body = body
        self.delivery_tag = delivery_tag
        self._channel = channel
        self._source = source
        self._alone = alone  # the only unacked delivery its channel will ever carry

    @classmethod
    def from_raw(cls, raw: aiormq.abc.DeliveredMessage) -> Delivery:
        """A delivery as aiormq hands it to a consumer callback."""
        tag = raw.delivery_tag
        assert tag is not None, "a consumer delivery has a tag"
        return cls(raw.body, tag, raw.channel, raw)

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage, alone: bool = False) -> Delivery:
        """A message aio-pika delivered (or got); `alone`: no other delivery shares its
        channel, now or later (a chain's basic.get), so `give_back` may close it."""
        tag = message.delivery_tag
        assert tag is not None, "an unacked message has a tag"
        return cls(message.body, tag, message.channel, message, alone)

    @property
    def message_id(self) -> str | None:
        if isinstance(self._source, aiormq.abc.DeliveredMessage):
            return self._source.header.properties.message_id
        return self._source.message_id

    @property
    def delivery_count(self) -> int:
        """How many times RabbitMQ delivered this message before (quorum queues count
        them in the `x-delivery-count` header; 0 elsewhere)."""
        if isinstance(self._source, aiormq.abc.DeliveredMessage):
            headers = self._source.header.properties.headers
        else:
            headers = self._source.headers
        count = headers.get("x-delivery-count") if headers else None
        return count if isinstance(count, int) and not isinstance(count, bool) else 0

    async def ack(self, multiple: bool = False) -> None:
        """Ack this delivery (and, with `multiple`, every earlier one on its channel)."""
        await self._channel.basic_ack(self.delivery_tag, multiple=multiple)

    async def give_back(self) -> None:
        """Return the delivery to its queue, in its place, to run again.

        A nack puts a message back at the head of a classic queue and of a quorum
        queue with a delivery limit (the partition queues), but at the back of a
        quorum queue without one (the execution-key waiting queues, on RabbitMQ
        3.10 at least), behind the jobs of its key that were enqueued after it. A
        message whose channel closes goes back to the head of either: so a delivery
        alone on its channel is given back by closing the channel.
        """
        if self._alone:
            await self._channel.close()
        else:
            await self._channel.basic_nack(self.delivery_tag, requeue=True)

    def properties(self) -> dict[str, Any]:
        """The properties a republish (retry, bury) keeps; see `broker.kept_properties`."""
        if isinstance(self._source, aiormq.abc.DeliveredMessage):
            return kept_properties(self._source.header.properties)
        return properties_of(self._source)
