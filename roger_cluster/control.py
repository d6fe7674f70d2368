"""Asking the nodes: a control queue per node, and the client that asks them all.

Some cluster state lives only in a node's memory: which jobs run there right
now. etcd tells which nodes are alive; RabbitMQ carries the question to each.
Every node consumes its own control queue `roger.<namespace>.control.<node>`
(`names.control_queue_name`), declared exclusive: it lives and dies with the
node's connection, no other connection can consume it, and the node declares
it again after every reconnect, and after RabbitMQ cancelled its consumer
(the queue deleted by hand). A client sends one request per node, with a
correlation id and RabbitMQ's direct reply-to (no reply queue to declare or to
leave behind), and gathers the replies until a deadline.

The invariant: every node asked is accounted for. A node that does not answer
in time, has no control queue, or answers with an error is reported as
unreachable with the reason, never silently left out.

Wire format, msgpack, content type `application/x-msgpack`:

    request  {"v": 1, "op": "running", "args": {"partition": "myapp"}}
    reply    {"v": 1, "node": "n1", "ok": true, "result": ...}
             {"v": 1, "node": "n1", "ok": false, "error": "unknown op 'frob'"}

An op is a name and a handler; adding one ("info", ...) adds a handler on the
node and a function here. A node that does not know an op answers with an
error instead of staying silent. Requests carry an expiration equal to the
client's timeout, so a node frozen for a while does not answer stale questions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
import msgpack
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from .broker import Broker, on_consumer_cancelled
from .codec import CONTENT_TYPE
from .errors import BrokerError, DecodeError
from .names import control_queue_name

if TYPE_CHECKING:  # the client side must not import the runtime
    from .runtime.worker import Worker

log = logging.getLogger(__name__)

CONTROL_VERSION = 1
DEFAULT_TIMEOUT = 2.0
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
# A reply to a client that is gone is dropped by RabbitMQ; never wait long on it.
REPLY_PUBLISH_TIMEOUT = 5.0

Handler = Callable[[Mapping[str, Any]], Awaitable[Any]]

_AMQP_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    RuntimeError,  # aiormq: "<Connection ...> closed"
    asyncio.TimeoutError,
)


# -- wire format -----------------------------------------------------------


def encode_request(op: str, args: Mapping[str, Any]) -> bytes:
    """A request body."""
    body: bytes = msgpack.packb({"v": CONTROL_VERSION, "op": op, "args": dict(args)}, use_bin_type=True)
    return body


def decode_request(body: bytes) -> tuple[str, dict[str, Any]]:
    """(op, args) of a request body; DecodeError if it is not one."""
    fields = _unpack(body, "request")
    op, args = fields.get("op"), fields.get("args", {})
    if not isinstance(op, str) or not isinstance(args, dict):
        raise DecodeError("control request needs a string 'op' and a map 'args'")
    return op, args


def encode_reply(node: str, result: Any = None, error: str | None = None) -> bytes:
    """A reply body: a result, or an error."""
    fields: dict[str, Any] = {"v": CONTROL_VERSION, "node": node, "ok": error is None}
    if error is None:
        fields["result"] = result
    else:
        fields["error"] = error
    body: bytes = msgpack.packb(fields, use_bin_type=True, default=str)
    return body


def decode_reply(body: bytes) -> Any:
    """The result of a reply body; DecodeError for a bad reply, RemoteError for an error reply."""
    fields = _unpack(body, "reply")
    if fields.get("ok") is True:
        return fields.get("result")
    raise RemoteError(str(fields.get("error", "the node answered with an error")))


def _unpack(body: bytes, what: str) -> dict[str, Any]:
    try:
        fields = msgpack.unpackb(body, raw=False)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"control {what} is not valid msgpack: {e}") from e
    if not isinstance(fields, dict) or fields.get("v") != CONTROL_VERSION:
        raise DecodeError(f"control {what} is not a version {CONTROL_VERSION} map")
    return fields


class RemoteError(BrokerError):
    """A node answered a control request with an error."""


# -- the node side ---------------------------------------------------------


class ControlServer:
    """Answers control requests on this node's control queue.

    `start()` is idempotent and replayable: the node calls it whenever it
    converges, so after a reconnect (or a lost channel) the queue is declared
    and consumed again. Handlers are small and read-only; one that fails
    produces an error reply, never a crash.
    """

    def __init__(self, broker: Broker, namespace: str, node: str, handlers: Mapping[str, Handler]) -> None:
        self.broker = broker
        self.node = node
        self.queue_name = control_queue_name(namespace, node)
        self.handlers = dict(handlers)
        self._channel: AbstractChannel | None = None
        self._on_closed: Callable[[], None] | None = None
        self._cancelled = False  # RabbitMQ cancelled the consumer: its queue was deleted

    @property
    def is_alive(self) -> bool:
        """Whether the control queue is being consumed."""
        return not self._cancelled and self._channel is not None and not self._channel.is_closed

    def on_closed(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the channel closes for any reason but our own close()."""
        self._on_closed = callback

    async def start(self) -> None:
        """Declare the control queue and consume it, unless already doing so."""
        if self.is_alive:
            return
        await self.close()
        channel = await self.broker.channel()
        try:
            queue = await channel.declare_queue(
                self.queue_name,
                durable=False,
                exclusive=True,
                auto_delete=True,
                arguments={"x-queue-type": "classic"},
            )
            await queue.consume(self._on_request, no_ack=True)
            await on_consumer_cancelled(channel, lambda _: self._lost(channel))
        except _AMQP_ERRORS as e:
            with contextlib.suppress(*_AMQP_ERRORS):
                await channel.close()
            raise BrokerError(f"cannot consume control queue {self.queue_name}: {e}") from e
        self._channel, self._cancelled = channel, False
        channel.close_callbacks.add(self._closed)
        log.info("answering control requests on %s", self.queue_name)

    def _lost(self, channel: AbstractChannel) -> None:
        """RabbitMQ cancelled the consumer: start() opens a new channel and declares the queue
        again (requests are not acked: nothing is lost with the old channel)."""
        if channel is self._channel and not self._cancelled:
            log.warning("RabbitMQ cancelled the consumer of %s (the queue was deleted?)", self.queue_name)
            self._cancelled = True
            if self._on_closed is not None:
                self._on_closed()

    def _closed(self, channel: object, *_: object) -> None:
        if channel is self._channel:
            self._channel = None
            if self._on_closed is not None:
                self._on_closed()

    async def close(self) -> None:
        """Stop answering; the queue goes with the connection (or now, being auto-delete)."""
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(*_AMQP_ERRORS):
                await channel.close()

    async def _on_request(self, message: AbstractIncomingMessage) -> None:
        body = await self.answer(message.body)
        channel = self._channel
        if not message.reply_to or channel is None:
            return
        reply = aio_pika.Message(body, content_type=CONTENT_TYPE, correlation_id=message.correlation_id)
        try:
            await asyncio.wait_for(
                channel.default_exchange.publish(reply, routing_key=message.reply_to, mandatory=False),
                REPLY_PUBLISH_TIMEOUT,
            )
        except _AMQP_ERRORS as e:  # the client is gone, or the channel with it: nothing to do
            log.debug("could not answer control request %s: %s", message.correlation_id, e)

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

    return {"ping": ping, "running": running}


def running_jobs(worker: Worker, partition: str | None = None) -> list[dict[str, Any]]:
    """The jobs running on this node now (of `partition` if given), as wire maps.

    The start time is read from the monotonic clock the worker keeps, brought
    to wall-clock time here, so `elapsed` is exact even if the clock jumps.
    """
    now, now_monotonic = time.time(), time.monotonic()
    found = []
    for (job_partition, job_id), running in list(worker.running.items()):
        if partition is not None and job_partition != partition:
            continue
        context = running.job.context
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


# -- the client side -------------------------------------------------------


@dataclass(frozen=True)
class UnreachableNode:
    """A node that was asked and gave no usable answer, and why."""

    node: str
    reason: str


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

    async def on_reply(self, message: AbstractIncomingMessage) -> None:
        node = self.pending.pop(message.correlation_id or "", None)
        if node is None:
            return  # a late reply to an earlier request: ignore it
        try:
            self.results[node] = decode_reply(message.body)
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
    channel = await broker.channel()
    try:
        replies = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)
        await replies.consume(gather.on_reply, no_ack=True)

        async def send(correlation_id: str, node: str) -> None:
            request = aio_pika.Message(
                body,
                content_type=CONTENT_TYPE,
                correlation_id=correlation_id,
                reply_to=DIRECT_REPLY_TO,
                expiration=timeout,
                type=op,
            )
            name = control_queue_name(namespace, node)
            try:
                await channel.default_exchange.publish(request, routing_key=name, mandatory=True)
            except aio_pika.exceptions.PublishError:
                gather.fail(correlation_id, "no control queue (the node is starting, or lost RabbitMQ)")

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(send(c, node) for c, node in gather.requests))
                await gather.all_in.wait()
    except _AMQP_ERRORS as e:
        raise BrokerError(f"asking the nodes ({op}): {e}") from e
    finally:
        with contextlib.suppress(*_AMQP_ERRORS):
            await channel.close()
    for node in gather.pending.values():
        gather.failed[node] = f"no answer within {timeout:g}s"
    unreachable = [UnreachableNode(node, gather.failed[node]) for node in sorted(gather.failed)]
    return Answers(gather.results, unreachable)


@dataclass(frozen=True)
class RunningJob:
    """A job running on a node, as that node reported it."""

    id: str
    job: str
    partition: str
    queue: str | None
    node: str
    retry_count: int
    enqueued_at: float | None
    started_at: float  # the node's wall clock
    elapsed: float  # seconds, when the node answered

    @classmethod
    def from_wire(cls, node: str, data: object) -> RunningJob:
        """Read one entry of a `running` answer; DecodeError if malformed."""
        if not isinstance(data, dict):
            raise DecodeError(f"node {node} sent a running job that is not a map")
        try:
            return cls(
                id=str(data["id"]),
                job=str(data["job"]),
                partition=str(data["partition"]),
                queue=None if data.get("queue") is None else str(data["queue"]),
                node=node,
                retry_count=int(data.get("retry_count") or 0),
                enqueued_at=None if data.get("enqueued_at") is None else float(data["enqueued_at"]),
                started_at=float(data["started_at"]),
                elapsed=float(data["elapsed"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DecodeError(f"node {node} sent a malformed running job: {e!r}") from e


@dataclass(frozen=True)
class RunningJobs:
    """The running jobs of the cluster, and the nodes that could not tell theirs."""

    jobs: list[RunningJob]
    unreachable: list[UnreachableNode]
    nodes: list[str]  # every node asked


async def running(
    broker: Broker,
    namespace: str,
    nodes: Sequence[str],
    partition: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> RunningJobs:
    """Ask every node in `nodes` which jobs it runs (of `partition`, if given)."""
    args = {} if partition is None else {"partition": partition}
    answers = await ask(broker, namespace, nodes, "running", args, timeout)
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
