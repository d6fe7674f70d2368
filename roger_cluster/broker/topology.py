"""Queues: idempotent declares with their arguments, stats, deletes.

Declares are idempotent, so they are replayed freely after a reconnect or on
every partition-map change. A queue that exists with other arguments is a
clear `BrokerError`, not a closed channel for whoever declared next.

A quorum partition queue and its buried queue are created with
`x-queue-leader-locator: balanced`, so RabbitMQ puts each new leader on the
member that leads the fewest queues, not on the member the declaring client
happens to be connected to. RabbitMQ (3.10 and later) compares that argument on
every redeclare, so a queue created without it (by an earlier version) is
declared again as it is, never refused: see `LEADER_LOCATOR`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq

from ..config import AmqpConfig
from ..errors import BrokerError
from ..names import buried_queue_name, exec_waiting_queue_name, queue_name
from .connection import CONNECTION_ERRORS, Connection

# Seconds between RabbitMQ cancelling a consumer (its queue deleted) and declaring the
# queue again. A quorum queue being deleted still takes declares for a while after the
# cancel (over a second, seen on RabbitMQ 3.10), and a basic.consume on it makes
# RabbitMQ close the whole connection (INTERNAL_ERROR): `check_consumable` tells when
# it is gone; this pause spares most of those checks.
REDECLARE_DELAY = 0.5
# Where RabbitMQ places the leader of a new quorum partition queue: on the member
# leading the fewest queues. Only a creation-time choice: existing leaders stay put.
LEADER_LOCATOR = {"x-queue-leader-locator": "balanced"}


@dataclass(frozen=True)
class QueueStats:
    """What a passive declare tells about a queue."""

    name: str
    ready: int
    consumers: int


class Topology(Connection):
    """Declaring, inspecting and deleting queues on the connection."""

    def __init__(self, config: AmqpConfig, connection_name: str | None = None) -> None:
        super().__init__(config, connection_name)
        self._declared: set[str] = set()  # waiting queues declared on this connection
        # Queues found to exist without the leader locator (made by an earlier version):
        # declared without it from then on. Kept across reconnects: the queues stay.
        self._unlocated: set[str] = set()

    async def close(self) -> None:
        """Close the connection; unacked deliveries go back to their queues."""
        self._declared.clear()
        await super().close()

    async def declare(self, partition: str, queue: str) -> None:
        """Declare the queue and its buried queue, durable, of the configured type."""
        queues = {
            queue_name(partition, queue): self.main_arguments(partition, queue),
            buried_queue_name(partition, queue): {"x-queue-type": self.config.queue_type},
        }
        try:
            await self._declare(self._located(queues))
        except BrokerError as e:
            if "x-queue-leader-locator" not in str(e) or self._unlocated.issuperset(queues):
                raise
            # Made by an earlier version, without the locator: declare it as it is.
            self._unlocated.update(queues)
            await self._declare(self._located(queues))

    def _located(self, queues: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """`queues` with the leader locator added to the quorum queues not known to lack it."""
        if self.config.queue_type != "quorum":
            return queues
        return {
            name: arguments if name in self._unlocated else arguments | LEADER_LOCATOR
            for name, arguments in queues.items()
        }

    def main_arguments(self, partition: str, queue: str) -> dict[str, Any]:
        """A partition queue: with quorum queues, a poison message (one that keeps
        killing its consumer) is dead-lettered to the buried queue after
        `delivery_limit` deliveries instead of crashing node after node forever."""
        arguments: dict[str, Any] = {"x-queue-type": self.config.queue_type}
        if self.config.queue_type == "quorum" and self.config.delivery_limit:
            arguments |= {
                "x-delivery-limit": self.config.delivery_limit,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": buried_queue_name(partition, queue),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        return arguments

    async def _declare(self, queues: dict[str, dict[str, Any]]) -> None:
        async def kept() -> None:
            channel = await self._declarer()
            for name, arguments in queues.items():
                await channel.declare_queue(name, durable=True, arguments=arguments)

        async def alone() -> None:
            async with self._short_channel() as channel:
                for name, arguments in queues.items():
                    await channel.declare_queue(name, durable=True, arguments=arguments)

        first = next(iter(queues))
        try:
            try:
                await kept()
            except (aiormq.exceptions.ChannelClosed, RuntimeError):
                # A channel error (PRECONDITION_FAILED: a queue exists with other
                # arguments) closes the kept channel for every declare waiting on
                # it, whichever queue it was about: each finds out on its own channel.
                await self._guard(alone, f"declaring queue {first}")
            except CONNECTION_ERRORS as e:
                raise self._unreachable(e) from e
        except BrokerError as e:
            if "PRECONDITION_FAILED" in str(e.__cause__):
                raise BrokerError(
                    f"queue {first} already exists with other settings than"
                    f" durable {self.config.queue_type}: {e.__cause__}"
                ) from e
            raise

    async def declare_waiting(self, partition: str, key: str, again: bool = False) -> str:
        """Declare an execution key's waiting queue (once per connection, unless `again`:
        it may have been deleted by hand since); returns its name."""
        name = exec_waiting_queue_name(partition, key)
        if again or name not in self._declared:
            await self._declare({name: {"x-queue-type": self.config.queue_type}})
            self._declared.add(name)
        return name

    async def stats(self, name: str) -> QueueStats | None:
        """Ready messages and consumers of a queue, or None if it does not exist."""

        async def run() -> QueueStats | None:
            async with self._short_channel() as channel:
                try:
                    declared = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    return None  # the channel is closed by the 404; nothing to release
                result = declared.declaration_result
                return QueueStats(name, result.message_count or 0, result.consumer_count or 0)

        return await self._guard(run, f"reading queue {name}")

    async def check_consumable(self, name: str) -> None:
        """Raise BrokerError unless queue `name` answers: declared again after a deletion,
        a quorum queue still being deleted takes the declare, but a consume on it makes
        RabbitMQ close the whole connection (see REDECLARE_DELAY)."""
        if await self.stats(name) is None:
            raise BrokerError(f"queue {name} is still being deleted")

    async def delete_queue(self, name: str) -> None:
        """Delete a queue and whatever it holds (quorum queues cannot be deleted "if empty":
        the caller makes sure nothing can be published into it meanwhile)."""
        self._declared.discard(name)
        self._unlocated.discard(name)

        async def run() -> None:
            async with self._short_channel() as channel:
                await channel.queue_delete(name, if_unused=False, if_empty=False)

        await self._guard(run, f"deleting queue {name}")
