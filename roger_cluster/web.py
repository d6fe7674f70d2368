"""The HTTP servers' common ground, on aiohttp: the node's probes (`health.py`) and the dashboard.

Why it exists: both serve a few small endpoints to clients we do not control
(a Prometheus scraper, a kubelet, a browser, a port scanner), so both need
the same limits, and a slow or hostile client must cost one connection for a
few seconds, never the server. aiohttp parses HTTP/1.1 (keep-alive, pipelining,
chunked bodies); this module sets its limits once:

- a request body is at most `MAX_BODY` bytes (413 beyond), and must arrive
  within `READ_TIMEOUT` seconds (408);
- at most `MAX_HEADERS` headers, each line at most aiohttp's 8190 bytes (400);
- a connection that sends no complete request within `IDLE_TIMEOUT` seconds
  (a silent or trickling client, or an idle keep-alive) is closed;
- every response says `Cache-Control: no-store`, `X-Content-Type-Options:
  nosniff` and `X-Frame-Options: DENY`.

`WebServer` owns the listening socket (`start()` / `stop()`); a subclass
builds the `aiohttp.web.Application` in `make_app()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from .errors import HttpError

log = logging.getLogger(__name__)

READ_TIMEOUT = 5.0
"""Seconds a request body may take to arrive."""
IDLE_TIMEOUT = 5.0
"""Seconds a connection may stay without a complete request (idle keep-alive included)."""
MAX_BODY = 64 * 1024
"""Bytes a request body may have."""
MAX_HEADERS = 100
"""Headers a request may have."""
SHUTDOWN_TIMEOUT = 2.0
"""Seconds `stop()` lets requests in flight finish before cancelling them."""

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def respond(
    status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None
) -> web.Response:
    """A response with exactly this Content-Type (aiohttp would add a charset of its own)."""
    return web.Response(status=status, body=body, headers={"Content-Type": content_type, **(headers or {})})


def json_response(status: int, data: object, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response."""
    return respond(status, "application/json", json.dumps(data, default=str).encode(), headers)


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """`{"error": message}` with `status`."""
    return json_response(status, {"error": message}, headers)


async def read_body(request: web.Request) -> bytes:
    """The request's body: HttpError 413 over MAX_BODY, 408 if it takes over READ_TIMEOUT."""
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise HttpError(413, f"the body may be at most {MAX_BODY} bytes") from None
    except TimeoutError:
        raise HttpError(408, f"the body did not arrive within {READ_TIMEOUT:g} s") from None


async def json_body(request: web.Request) -> dict[str, object]:
    """The body as a JSON object; HttpError 415/400/413 if it is not one."""
    kind = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        # Also what keeps a plain cross-site form from posting here: browsers
        # send JSON cross-origin only after a preflight this server never grants.
        raise HttpError(415, "send the action as Content-Type: application/json")
    body = await read_body(request)
    try:
        data = json.loads(body or b"null")
    except ValueError as e:
        raise HttpError(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise HttpError(400, "the body must be a JSON object")
    return data


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


class WebServer:
    """Listens on `host`:`port` (0: any free port) and serves `make_app()`."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        """The application to serve; called by `start()`."""
        raise NotImplementedError

    def application(self, middlewares: list[Middleware] | None = None) -> web.Application:
        """An empty application with this module's limits and headers, for `make_app`."""
        app = web.Application(client_max_size=MAX_BODY, middlewares=middlewares or [])
        app.on_response_prepare.append(_security_headers)
        return app

    async def start(self) -> None:
        """Listen; the port is in use (or not allowed) -> OSError."""
        runner = web.AppRunner(
            self.make_app(),
            access_log=None,
            keepalive_timeout=IDLE_TIMEOUT,
            max_headers=MAX_HEADERS,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            handle_signals=False,  # signals belong to cli/
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0 and runner.addresses:  # the port actually bound
            self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening, and close every connection (requests in flight get SHUTDOWN_TIMEOUT)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
