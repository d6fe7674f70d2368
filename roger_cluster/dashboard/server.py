"""The dashboard's HTTP server: one page, one state endpoint, a few actions.

    GET  /                     the page (static/index.html, shipped with the package)
    GET  /api/state            the cluster as JSON (see state.py); the page polls it
    POST /api/actions/<name>   an operator action (see actions.py)

It has no authentication: whoever reaches the port can pause queues and
cancel jobs. So it binds to 127.0.0.1 by default, and two checks keep a web
page in the operator's own browser from driving it: actions must be JSON
(a cross-site form cannot send that without a CORS preflight, which is never
granted) and an `Origin` header, if sent, must name this server; while bound
to loopback, the `Host` header must name loopback too (no DNS rebinding).

No response ever carries a traceback: errors are `{"error": "..."}` with
400 (bad input), 404 (no such partition, queue or schedule), 409, 503 (RabbitMQ or
etcd unreachable), 504 (a drain ran out of time) or 500; the details of an
unexpected one go to the log.
"""

from __future__ import annotations

import ipaddress
import logging
from importlib import resources
from urllib.parse import urlsplit

from ..client import Client
from ..errors import (
    BrokerConnectionError,
    ClusterConnectionError,
    ConfigError,
    DrainAbandoned,
    DrainTimeout,
    DuplicateJob,
    JobError,
    RogerError,
    UnknownPartition,
    UnknownSchedule,
    UnroutableJob,
)
from ..http import HttpError, HttpServer, Request, Response
from .actions import ACTIONS
from .state import Snapshots

log = logging.getLogger(__name__)

ACTION_PREFIX = "/api/actions/"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

# Most specific first: the first matching class decides the status.
_STATUS: list[tuple[type[Exception], int]] = [
    (DuplicateJob, 409),
    (ConfigError, 400),
    (JobError, 400),
    (UnknownPartition, 404),
    (UnknownSchedule, 404),
    (UnroutableJob, 404),
    (DrainTimeout, 504),
    (DrainAbandoned, 409),
    (BrokerConnectionError, 503),
    (ClusterConnectionError, 503),
    (RogerError, 500),
]


def _page() -> bytes:
    return resources.files(__package__).joinpath("static/index.html").read_bytes()


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(netloc: str) -> str:
    """`127.0.0.1:8080` -> `127.0.0.1`, `[::1]:80` -> `::1`."""
    return (urlsplit(f"//{netloc}").hostname or "").lower()


class DashboardServer(HttpServer):
    """Serves the dashboard for `client` on `host`:`port` (0: any free port)."""

    def __init__(self, client: Client, host: str = "127.0.0.1", port: int = 8080) -> None:
        super().__init__(host, port)
        self.client = client
        self.snapshots = Snapshots(client)
        self._page = _page()  # read once: a broken install fails at start, not per request

    @property
    def url(self) -> str:
        """Where the page is, once started."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        """Listen; the port is in use (or not allowed) -> OSError."""
        await super().start()
        log.info("dashboard on %s", self.url)

    async def __aenter__(self) -> DashboardServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def respond(self, request: Request) -> Response:
        """The response to one request; never raises."""
        try:
            self._check_host(request)
            if request.path.startswith(ACTION_PREFIX):
                return await self._action(request)
            return await self._get(request)
        except HttpError as e:
            return Response.error(e.status, e.message)
        except Exception as e:
            return self._error(request, e)

    async def _get(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise HttpError(405, f"{request.path} answers GET only")
        if request.path in ("/", "/index.html"):
            return Response(200, "text/html; charset=utf-8", self._page)
        if request.path == "/api/state":
            return Response.json(200, await self.snapshots.get())
        raise HttpError(404, f"nothing at {request.path}")

    async def _action(self, request: Request) -> Response:
        if request.method != "POST":
            raise HttpError(405, "actions are POST requests")
        name = request.path.removeprefix(ACTION_PREFIX)
        action = ACTIONS.get(name)
        if action is None:
            raise HttpError(404, f"no action {name!r}; there are {', '.join(sorted(ACTIONS))}")
        self._check_origin(request)
        body = request.json_body()
        result = await action(self.client, body)
        self.snapshots.invalidate()
        log.info("dashboard action %s %s: done", name, body)
        return Response.json(200, {"ok": True, "action": name, **result})

    def _check_host(self, request: Request) -> None:
        if _is_loopback(self.host) and not _is_loopback(_host_name(request.headers.get("host", ""))):
            raise HttpError(403, "this dashboard listens on loopback only; open it as localhost")

    def _check_origin(self, request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
            raise HttpError(403, f"actions are accepted only from this dashboard's page, not from {origin}")

    def _error(self, request: Request, error: Exception) -> Response:
        for kind, status in _STATUS:
            if isinstance(error, kind):
                log.info("dashboard %s %s: %s", request.method, request.path, error)
                return Response.error(status, str(error))
        log.exception("dashboard %s %s failed", request.method, request.path)
        return Response.error(500, f"internal error ({type(error).__name__}): see the dashboard's log")
