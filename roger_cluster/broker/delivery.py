"""A delivery as the runtime needs it: body, tag, ack and give-back, and properties for a republish.

Consumers take deliveries straight from aiormq, below aio-pika: aio-pika
builds an `IncomingMessage` (a dozen guarded attribute sets) and one more task
for every delivery, which cost a node about a fifth of its time draining no-op
jobs (see docs/performance.md). So a `Delivery` wraps aiormq's message as it
came, consumed (`Consumer.consume`) or got (`Consumer.get`, the execution-key
chains' basic.get): settling has one shape to deal with. Its ack and
give-back raise `BrokerError`, never a library exception.
"""

from __future__ import annotations

from typing import Any

import aiormq
import aiormq.abc
from pamqp import commands as spec

from ..errors import BrokerError
from .connection import CHANNEL_ERRORS
from .messages import kept_properties

# What aiormq hands a consumer callback; opaque above the broker package, which
# only passes it to `Delivery.from_raw` (see `Consumer.consume`).
RawDelivery = aiormq.abc.DeliveredMessage

_SETTLE_ERRORS: tuple[type[BaseException], ...] = (aiormq.exceptions.AMQPError, *CHANNEL_ERRORS)


class Delivery:
    """One unacked delivery on one channel."""

    __slots__ = ("body", "delivery_tag", "_channel", "_raw", "_alone", "_given_back")

    def __init__(self, raw: RawDelivery, delivery_tag: int, alone: bool = False) -> None:
        self.body = raw.body
        self.delivery_tag = delivery_tag
        self._channel = raw.channel
        self._raw = raw
        self._alone = alone  # the only unacked delivery its channel will ever carry
        # Settled once: a second nack of a tag is a channel error, and the channel may be
        # shared by other consumers (a consumer leaving it gives back what still runs).
        self._given_back = False

    @classmethod
    def from_raw(cls, raw: RawDelivery, alone: bool = False) -> Delivery:
        """A delivery as aiormq hands it to a consumer callback (or a basic.get returns it);
        `alone`: no other delivery shares its channel, now or later, so `give_back` may
        close it."""
        tag = raw.delivery_tag
        assert tag is not None, "an unacked delivery has a tag"
        return cls(raw, tag, alone)

    @property
    def message_id(self) -> str | None:
        return self._raw.header.properties.message_id

    @property
    def correlation_id(self) -> str | None:
        return self._raw.header.properties.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self._raw.header.properties.reply_to

    @property
    def delivery_count(self) -> int:
        """How many times RabbitMQ delivered this message before (quorum queues count
        them in the `x-delivery-count` header; 0 elsewhere)."""
        headers = self._raw.header.properties.headers
        count = headers.get("x-delivery-count") if headers else None
        return count if isinstance(count, int) and not isinstance(count, bool) else 0

    async def ack(self, multiple: bool = False) -> None:
        """Ack this delivery (and, with `multiple`, every earlier one on its channel);
        a no-op once it was given back."""
        if self._given_back:
            return
        try:
            await self._channel.basic_ack(self.delivery_tag, multiple=multiple)
        except _SETTLE_ERRORS as e:
            raise BrokerError(f"acking delivery {self.delivery_tag}: {e}") from e

    async def give_back(self) -> None:
        """Return the delivery to its queue, in its place, to run again.

        A nack puts a message back at the head of a classic queue and of a quorum
        queue with a delivery limit (the partition queues), but at the back of a
        quorum queue without one (the execution-key waiting queues, on RabbitMQ
        3.10 at least), behind the jobs of its key that were enqueued after it. A
        message whose channel closes goes back to the head of either: so a delivery
        alone on its channel is given back by closing the channel. Once only: a
        second call does nothing.
        """
        if self._given_back:
            return
        self._given_back = True
        try:
            if self._alone:
                await self._channel.close()
            else:
                await self._channel.basic_nack(self.delivery_tag, requeue=True)
        except _SETTLE_ERRORS as e:
            raise BrokerError(f"giving back delivery {self.delivery_tag}: {e}") from e

    @property
    def amqp_properties(self) -> spec.Basic.Properties:
        """The message's properties as they came (for the broker package's republishes)."""
        properties: spec.Basic.Properties = self._raw.header.properties
        return properties

    def properties(self) -> dict[str, Any]:
        """The properties a republish (retry, bury) keeps; see `messages.kept_properties`."""
        return kept_properties(self._raw.header.properties)
