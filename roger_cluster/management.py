"""A tiny client of the RabbitMQ management HTTP API.

`rogerctl partition show` reads unacked counts here (AMQP itself only tells
ready messages and consumers). Tests use it because the product promises
that the RabbitMQ console shows one
consumer per node on every partition queue, with prefetch = the queue's
concurrency, and that queue counts (ready / unacked) are what `rogerctl` shows.
Tests check that promise where an operator would look: the management API
(plugin `rabbitmq_management`), not our own bookkeeping.

On aiohttp: one `ClientSession` per `Management`, made on the first request
(constructing a Management does no I/O) in the event loop that makes it, so
its requests share a pool of keep-alive connections (`POOL_SIZE` at most)
instead of a thread and a TCP handshake each. Every request is bounded by
`timeout` seconds; `https` URLs are verified against the system's CAs, as
urllib did. `close()` (or `async with`) closes the pool; the next request
opens a new one. A `Client` closes its own in `Client.close()`.

Credentials travel in the URL's userinfo (`http://guest:guest@127.0.0.1:15672`),
the form `RabbitEndpoint.management_url` uses; without userinfo, guest/guest.

The management API serves statistics that its agent aggregates once per the
finest sample-retention granularity (5 s by default, 1 s on the test brokers
`testing/rabbitmq.py` starts): a new consumer or message count shows up up to that much
later, so tests poll with `eventually`, never assert once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from .errors import ConfigError, ManagementError

__all__ = ["ConsoleQueue", "ConsumerInfo", "Management", "ManagementError", "QueueRates"]

_Json = Mapping[str, object]

POOL_SIZE = 8
"""Connections one Management keeps open to the API at most."""


@dataclass(frozen=True)
class ConsumerInfo:
    """One consumer on a queue, as the console lists it."""

    queue: str
    vhost: str
    consumer_tag: str
    prefetch_count: int
    ack_required: bool
    active: bool
    channel_name: str | None
    connection_name: str | None


@dataclass(frozen=True)
class ConsoleQueue:
    """One queue with the counts the console shows (not `broker.QueueStats`, which is
    what AMQP itself tells: ready messages and consumers only)."""

    name: str
    vhost: str
    type: str  # "classic", "quorum" or "stream"
    durable: bool
    auto_delete: bool
    exclusive: bool
    messages: int
    messages_ready: int
    messages_unacknowledged: int
    consumers: int


@dataclass(frozen=True)
class QueueRates:
    """Messages per second through a queue, as the console's rate columns show them."""

    publish: float  # in
    """Messages in per second."""
    deliver: float  # handed to consumers (deliver + get)
    """Messages handed to consumers per second."""
    ack: float  # done
    """Messages acked (done) per second."""


class Management:
    """Client of one broker's management API. Constructing it does no I/O; `close()` it
    (or use `async with`) once it has been used."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"not a management URL: {url!r}")
        user = urllib.parse.unquote(parts.username) if parts.username else "guest"
        password = urllib.parse.unquote(parts.password) if parts.password else "guest"
        netloc = parts.netloc.rpartition("@")[2]  # host[:port] without the credentials
        path = parts.path.rstrip("/")
        self.base_url = urllib.parse.urlunsplit((parts.scheme, netloc, path, "", ""))
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self.authorization = f"Basic {token}"
        """The `Authorization` header value its requests carry."""
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> Management:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections; a later request opens new ones."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    @classmethod
    def for_amqp(cls, amqp_url: str, management_url: str | None = None, timeout: float = 3.0) -> Management:
        """The given management URL, or port 15672 on the AMQP host with its credentials."""
        if management_url:
            return cls(management_url, timeout=timeout)
        parts = urllib.parse.urlsplit(amqp_url)
        scheme = "https" if parts.scheme == "amqps" else "http"
        userinfo = parts.netloc.rpartition("@")[0]
        host = parts.hostname or "localhost"
        host = f"[{host}]" if ":" in host else host
        netloc = f"{userinfo}@{host}:15672" if userinfo else f"{host}:15672"
        return cls(urllib.parse.urlunsplit((scheme, netloc, "", "", "")), timeout=timeout)

    async def unacked(self, queue: str, vhost: str = "/") -> int | None:
        """Unacknowledged messages of `queue`, or None if the API cannot tell."""
        try:
            info = await self.queue(queue, vhost)
        except ManagementError:
            return None
        return None if info is None else info.messages_unacknowledged

    # -- async API ---------------------------------------------------------

    async def overview(self) -> _Json:
        """`/api/overview`: versions, cluster name, totals."""
        data = await self._get("/api/overview")
        if data is None:
            raise ManagementError(f"{self.base_url}/api/overview: not found")
        return _obj(data)

    async def queue(self, queue: str, vhost: str = "/") -> ConsoleQueue | None:
        """The queue's info, or None if it does not exist."""
        data = await self._get(f"/api/queues/{_q(vhost)}/{_q(queue)}")
        return None if data is None else _console_queue(_obj(data))

    async def queues(self, vhost: str = "/") -> list[ConsoleQueue]:
        """Every queue of the vhost."""
        data = await self._get(f"/api/queues/{_q(vhost)}")
        return [_console_queue(_obj(item)) for item in _list(data)]

    async def all_consumers(self, vhost: str = "/") -> list[ConsumerInfo]:
        """Every consumer of every queue of the vhost, in one request."""
        data = await self._get(f"/api/consumers/{_q(vhost)}")
        return [_consumer_info(_obj(item)) for item in _list(data or [])]

    async def queue_rates(self, vhost: str = "/") -> dict[str, QueueRates]:
        """Queue name -> its message rates, for every queue of the vhost, in one request.

        A queue that saw no traffic yet has no `message_stats`: its rates are 0.
        """
        columns = ",".join(["name", *(f"message_stats.{field}_details.rate" for field in _RATE_FIELDS)])
        data = await self._get(f"/api/queues/{_q(vhost)}?columns={columns}")
        rates: dict[str, QueueRates] = {}
        for item in _list(data or []):
            queue = _obj(item)
            stats = queue.get("message_stats")
            rates[_str(queue, "name") or ""] = _queue_rates(_obj(stats) if isinstance(stats, dict) else {})
        return rates

    async def consumers(self, queue: str, vhost: str = "/") -> list[ConsumerInfo]:
        """The consumers attached to `queue` (none if it does not exist), by tag.

        Read from the queue's `consumer_details`: it shows a new consumer as
        soon as `/api/consumers` does (same stats cycle) and costs one queue.
        """
        data = await self._get(f"/api/queues/{_q(vhost)}/{_q(queue)}")
        if data is None:
            return []
        details = _obj(data).get("consumer_details", [])
        found = [_consumer_info(_obj(item)) for item in _list(details)]
        return sorted(found, key=lambda c: c.consumer_tag)

    async def connection_names(self, vhost: str = "/") -> dict[str, str]:
        """Connection name ("10.0.0.5:41234 -> 10.0.0.2:5672") -> the name its client gave.

        A consumer's `connection_name` is the broker's name for the connection;
        the name a client chose (a node's is its node name) is only on the
        connection, as `user_provided_name`. Connections without one are left out.
        """
        path = f"/api/vhosts/{_q(vhost)}/connections?columns=name,user_provided_name"
        data = await self._get(path)
        names: dict[str, str] = {}
        for item in _list(data or []):
            connection = _obj(item)
            name, given = _str(connection, "name"), _str(connection, "user_provided_name")
            if name and given:
                names[name] = given
        return names

    async def api(self, path: str) -> object | None:
        """GET any API path (`/api/nodes`, ...) as parsed JSON; None on 404.

        For benchmarks and diagnostics that read figures this class has no method for.
        """
        return await self._get(path)

    async def delete_queue(self, queue: str, vhost: str = "/") -> bool:
        """Delete the queue whatever it holds; False if it did not exist."""
        path = f"/api/queues/{_q(vhost)}/{_q(queue)}"
        return await self._delete(path)

    async def delete_queues(self, prefix: str, vhost: str = "/") -> int:
        """Delete every queue whose name starts with `prefix`; how many went.

        For cleanup after a test that made partitions named from its own prefix.
        """
        if not prefix:
            raise ConfigError("refusing to delete every queue: give a non-empty prefix")
        deleted = 0
        for info in await self.queues(vhost):
            if info.name.startswith(prefix) and await self.delete_queue(info.name, vhost):
                deleted += 1
        return deleted

    async def delete_exchanges(self, prefix: str, vhost: str = "/") -> int:
        """Delete every exchange whose name starts with `prefix`; how many went."""
        if not prefix:
            raise ConfigError("refusing to delete every exchange: give a non-empty prefix")
        data = await self._get(f"/api/exchanges/{_q(vhost)}")
        deleted = 0
        for item in _list(data):
            name = _str(_obj(item), "name")
            path = f"/api/exchanges/{_q(vhost)}/{_q(name or '')}"
            if name and name.startswith(prefix) and await self._delete(path):
                deleted += 1
        return deleted

    # -- plumbing ----------------------------------------------------------

    async def _get(self, path: str) -> object | None:
        """GET `path` as JSON; None on 404."""
        body = await self._request("GET", path)
        try:
            return None if body is None else json.loads(body)
        except ValueError as e:
            raise ManagementError(f"GET {self.base_url}{path}: not JSON: {e}") from e

    async def _delete(self, path: str) -> bool:
        return await self._request("DELETE", path) is not None

    async def _request(self, method: str, path: str) -> bytes | None:
        url = self.base_url + path
        try:
            # encoded: the path segments are quoted already (the vhost "/" is "%2F")
            async with self._http().request(method, URL(url, encoded=True)) as response:
                if response.status == 404:
                    return None
                if response.status >= 400:
                    raise ManagementError(f"{method} {url}: HTTP {response.status}")
                return await response.read()
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise ManagementError(f"{method} {url}: {_describe(e)}") from e

    def _http(self) -> aiohttp.ClientSession:
        """The session of this event loop: made on the first request."""
        loop = asyncio.get_running_loop()
        if self._session is not None and self._loop is not loop:
            raise RuntimeError("a Management is used from one event loop only; make one per loop")
        if self._session is None:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                headers={"Authorization": self.authorization, "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit=POOL_SIZE),
            )
        return self._session


def _describe(error: Exception) -> str:
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return str(error) or type(error).__name__


def _q(segment: str) -> str:
    """Quote one path segment: the default vhost "/" becomes "%2F"."""
    return urllib.parse.quote(segment, safe="")


def _obj(value: object) -> _Json:
    if not isinstance(value, dict):
        raise ManagementError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise ManagementError(f"expected a JSON array, got {type(value).__name__}")
    return value


def _int(data: _Json, key: str) -> int:
    """A count; absent until the first stats cycle has run, then 0."""
    value = data.get(key, 0)
    return value if isinstance(value, int) else 0


def _str(data: _Json, key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _console_queue(data: _Json) -> ConsoleQueue:
    return ConsoleQueue(
        name=_str(data, "name") or "",
        vhost=_str(data, "vhost") or "",
        type=_str(data, "type") or "classic",
        durable=data.get("durable") is True,
        auto_delete=data.get("auto_delete") is True,
        exclusive=data.get("exclusive") is True,
        messages=_int(data, "messages"),
        messages_ready=_int(data, "messages_ready"),
        messages_unacknowledged=_int(data, "messages_unacknowledged"),
        consumers=_int(data, "consumers"),
    )


_RATE_FIELDS = ("publish", "deliver_get", "ack")


def _rate(stats: _Json, field: str) -> float:
    details = stats.get(f"{field}_details")
    value = details.get("rate") if isinstance(details, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def _queue_rates(stats: _Json) -> QueueRates:
    publish, deliver, ack = (_rate(stats, field) for field in _RATE_FIELDS)
    return QueueRates(publish=publish, deliver=deliver, ack=ack)


def _consumer_info(data: _Json) -> ConsumerInfo:
    queue = data.get("queue")
    queue_json = _obj(queue) if isinstance(queue, dict) else {}
    channel = data.get("channel_details")
    channel_json = _obj(channel) if isinstance(channel, dict) else {}
    return ConsumerInfo(
        queue=_str(queue_json, "name") or "",
        vhost=_str(queue_json, "vhost") or "",
        consumer_tag=_str(data, "consumer_tag") or "",
        prefetch_count=_int(data, "prefetch_count"),
        ack_required=data.get("ack_required") is True,
        active=data.get("active", True) is True,
        channel_name=_str(channel_json, "name"),
        connection_name=_str(channel_json, "connection_name"),
    )
