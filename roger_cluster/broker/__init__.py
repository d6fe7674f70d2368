"""Everything that talks to RabbitMQ: the only package that imports aio-pika or aiormq.

It turns their exceptions into `BrokerError` / `BrokerConnectionError` /
`UnroutableJob` at its border, and hands the layers above its own types
(`Consumer`, `Delivery`, `Peeked`, ...), never a channel or a message of the
libraries. `tests/unit/test_import_rules.py` keeps it so.

- `connection.py`: the connection, its channels, the channel limit, `on_connection_lost`.
- `spread.py`: which broker of a RabbitMQ cluster a process tries first, and next.
- `topology.py`: declares (idempotent, replayable) and queue arguments, stats, deletes.
- `publishing.py`: confirmed, mandatory publishes: jobs, waiting jobs, burials.
- `delaying.py`: the namespace's delay levels; delayed jobs and retries go through them.
- `reading.py`: peek without loss, move and take message by message.
- `messages.py`: the properties on the wire, what a republish keeps.
- `streams.py`: RabbitMQ streams over AMQP 0-9-1 (the job history): declare, append, read.
- `consuming.py`: `Consumer` (one channel that consumes) and `KeptConsumer`.
- `delivery.py`: `Delivery`, one unacked message as the runtime settles it.
"""

from __future__ import annotations

from .connection import CHANNEL_MAX, DECLARE_CHANNELS
from .consuming import Consumer, KeptConsumer, OnDelivery
from .delaying import DUE_HEADER, REASON_HEADER, TARGET_HEADER
from .delivery import Delivery, RawDelivery
from .messages import PERSISTENT, Moved, Peeked, amqp_message, amqp_properties, kept_properties
from .publishing import WAITING_PUBLISH_ATTEMPTS
from .reading import OnCount
from .streams import MARK_HEADER, StreamEntry, Streams, StreamSettings
from .topology import REDECLARE_DELAY, QueueStats


class Broker(Streams):
    """One AMQP connection to RabbitMQ and every operation on it.

    Built in layers, one concern per module: `Connection` (channels) <
    `Topology` (queues) < `Publishing` < `Delaying` < `Reading` < `Streams`. Consumers are `Consumer`s
    of it.
    """

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = [
    "Broker",
    "CHANNEL_MAX",
    "Consumer",
    "DECLARE_CHANNELS",
    "DUE_HEADER",
    "Delivery",
    "KeptConsumer",
    "MARK_HEADER",
    "Moved",
    "OnCount",
    "OnDelivery",
    "PERSISTENT",
    "Peeked",
    "QueueStats",
    "REASON_HEADER",
    "REDECLARE_DELAY",
    "RawDelivery",
    "StreamEntry",
    "StreamSettings",
    "TARGET_HEADER",
    "WAITING_PUBLISH_ATTEMPTS",
    "amqp_message",
    "amqp_properties",
    "kept_properties",
]
