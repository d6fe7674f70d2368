"""The asking side of control: one request per node, the replies gathered until a deadline.

Requests go to each node's control queue with a correlation id and
RabbitMQ's direct reply-to (no reply queue to declare or to leave behind),
and carry an expiration equal to the timeout, so a node frozen for a while
does not answer stale questions.

The invariant: every node asked is accounted for. A node that does not answer
in time, has no control queue, or answers with an error is reported as
unreachable with the reason, never silently left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..broker import Broker, Consumer, Delivery, RawDelivery
from ..codec import CONTENT_TYPE
from ..errors import BrokerError, DecodeError, UnroutableJob
from ..names import control_queue_name
from .wire import RUNNING, RemoteError, RunningJob, decode_reply, encode_request

DEFAULT_TIMEOUT = 2.0
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


@dataclass(frozen=True)
class UnreachableNode:
    """A node that was asked and gave no usable answer, and why."""

    node: str
    """The node's name."""
    reason: str
    """Why it gave no answer."""


@dataclass(frozen=True)
class Answers:
    """What the nodes answered: results by node, and every node that did not."""

    results: dict[str, Any]
    unreachable: list[UnreachableNode]


class _Gather:
    """Replies matched to requests by correlation id, every one expected up front
    (so an early reply can never make the set look complete)."""

    def __init__(self, nodes: Sequence[str]) -> None:
        self.pending = {uuid.uuid4().hex: node for node in nodes}  # correlation id -> node
        self.requests = list(self.pending.items())
        self.results: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        self.all_in = asyncio.Event()
        self._check()

    def fail(self, correlation_id: str, reason: str) -> None:
        node = self.pending.pop(correlation_id, None)
        if node is not None:
            self.failed[node] = reason
        self._check()

    async def on_reply(self, raw: RawDelivery) -> None:
        reply = Delivery.from_raw(raw)
        node = self.pending.pop(reply.correlation_id or "", None)
        if node is None:
            return  # a late reply to an earlier request: ignore it
        try:
            self.results[node] = decode_reply(reply.body)
        except (DecodeError, RemoteError) as e:
            self.failed[node] = f"answered with an error: {e}"
        self._check()

    def _check(self) -> None:
        if not self.pending:
            self.all_in.set()


async def ask(
    broker: Broker,
    namespace: str,
    nodes: Sequence[str],
    op: str,
    args: Mapping[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Answers:
    """Send `op` to every node in `nodes` and gather the answers for up to `timeout` s.

    Raises BrokerError only if RabbitMQ itself cannot be used; a node that
    does not answer is in `unreachable`.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if not nodes:
        return Answers({}, [])
    body = encode_request(op, args or {})
    gather = _Gather(nodes)
    channel = Consumer(broker, f"control replies ({op})")
    await channel.open()
    try:
        # Direct reply-to: the requests go out on the channel that consumes the replies.
        await channel.consume(DIRECT_REPLY_TO, gather.on_reply, no_ack=True)
        properties = {
            "content_type": CONTENT_TYPE,
            "reply_to": DIRECT_REPLY_TO,
            "expiration": timeout,
            "type": op,
        }

        async def send(correlation_id: str, node: str) -> None:
            name = control_queue_name(namespace, node)
            try:
                await channel.publish(body, name, {**properties, "correlation_id": correlation_id})
            except UnroutableJob:
                gather.fail(correlation_id, "no control queue (the node is starting, or lost RabbitMQ)")

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(send(c, node) for c, node in gather.requests))
                await gather.all_in.wait()
    except BrokerError as e:
        raise BrokerError(f"asking the nodes ({op}): {e}") from e
    finally:
        await channel.close()
    for node in gather.pending.values():
        gather.failed[node] = f"no answer within {timeout:g}s"
    unreachable = [UnreachableNode(node, gather.failed[node]) for node in sorted(gather.failed)]
    return Answers(gather.results, unreachable)


@dataclass(frozen=True)
class RunningJobs:
    """The running jobs of the cluster, and the nodes that could not tell theirs."""

    jobs: list[RunningJob]
    """The jobs running, from every node that answered."""
    unreachable: list[UnreachableNode]
    """The nodes that did not answer in time."""
    nodes: list[str]  # every node asked
    """Every node asked."""


async def running(
    broker: Broker,
    namespace: str,
    nodes: Sequence[str],
    partition: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> RunningJobs:
    """Ask every node in `nodes` which jobs it runs (of `partition`, if given)."""
    args = {} if partition is None else {"partition": partition}
    answers = await ask(broker, namespace, nodes, RUNNING, args, timeout)
    jobs: list[RunningJob] = []
    unreachable = list(answers.unreachable)
    for node, result in answers.results.items():
        try:
            if not isinstance(result, list):
                raise DecodeError(f"node {node} answered running with a {type(result).__name__}")
            jobs.extend(RunningJob.from_wire(node, item) for item in result)
        except DecodeError as e:
            unreachable.append(UnreachableNode(node, f"answered with an error: {e}"))
    jobs.sort(key=lambda j: (j.started_at, j.node, j.id))
    unreachable.sort(key=lambda u: u.node)
    return RunningJobs(jobs, unreachable, sorted(nodes))
