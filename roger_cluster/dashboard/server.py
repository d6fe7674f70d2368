"""The dashboard's HTTP server: one page, the state as JSON and as a stream, a few actions.

    GET  /                     the page (static/index.html, shipped with the package)
    GET  /api/state            the cluster as JSON (see state.py)
    GET  /api/events           the same, pushed about once a second (server-sent events)
    POST /api/actions/<name>   an operator action (see actions.py)
    GET  /login, POST /login   the sign-in form, when a token is set (see access.py)

On aiohttp, with the limits of `web.py`. Access (access.py): on loopback, by
default, no authentication; anywhere else a token is required, or the server
refuses to be made. Checks in order, each refusal a JSON error:

1. while bound to loopback, the `Host` header must name loopback too (403: no
   DNS rebinding);
2. with a token, the request must carry it (`Authorization: Bearer`) or a
   session cookie signed with it (401 otherwise; the page itself answers 401
   with the sign-in form);
3. an action must be a JSON POST (a cross-site form cannot send that without
   a CORS preflight, which is never granted), its `Origin`, if sent, must name
   this server and `Sec-Fetch-Site`, if sent, must not be cross-site (403);
   one made with a session cookie must carry the session's CSRF token in
   `X-Roger-CSRF` (403).

No response ever carries a traceback: errors are `{"error": "..."}` with
400 (bad input), 404 (no such partition, queue or schedule), 409, 503 (RabbitMQ or
etcd unreachable), 504 (a drain ran out of time) or 500; the details of an
unexpected one go to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from importlib import resources
from urllib.parse import urlsplit

from aiohttp import web

from ..client import Client
from ..errors import (
    BrokerConnectionError,
    ClusterConnectionError,
    ConfigError,
    DrainAbandoned,
    DrainTimeout,
    DuplicateJob,
    HttpError,
    JobError,
    RogerError,
    UnknownPartition,
    UnknownSchedule,
    UnroutableJob,
)
from ..web import Handler, WebServer, json_body, json_error, json_response, read_body, respond
from .access import CSRF_HEADER, SESSION_COOKIE, Access, is_loopback
from .actions import ACTIONS
from .state import Snapshots

log = logging.getLogger(__name__)

ACTION_PREFIX = "/api/actions/"
EVENT_INTERVAL = 1.0  # seconds between two states pushed on /api/events
MAX_STREAMS = 100  # open /api/events streams at most; each costs a connection, not a snapshot
CSRF_PLACEHOLDER = b"__ROGER_CSRF__"
HTML = "text/html; charset=utf-8"

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

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>roger_cluster dashboard: sign in</title>
<style>body{{font:14px system-ui,sans-serif;margin:4em auto;max-width:28em}}input{{font:inherit}}
.error{{color:#c62828}}</style></head>
<body><h1>roger_cluster dashboard</h1>
<form method="post" action="/login">
<p><label>Token <input type="password" name="token" autofocus autocomplete="current-password"></label>
<button type="submit">sign in</button></p></form>
<p class="error">{message}</p>
<p>The token is the content of the file given to <code>rogerctl dashboard --token-file</code>.</p>
</body></html>
"""


def _page() -> bytes:
    return resources.files(__package__).joinpath("static/index.html").read_bytes()


def _host_name(netloc: str) -> str:
    """`127.0.0.1:8080` -> `127.0.0.1`, `[::1]:80` -> `::1`."""
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:  # `[nonsense`
        return ""


def _login_page(status: int, message: str) -> web.Response:
    body = _LOGIN_PAGE.format(message=html.escape(message)).encode()
    return respond(status, HTML, body, {"WWW-Authenticate": 'Bearer realm="roger dashboard"'})


def status_of(error: Exception) -> int | None:
    """The HTTP status an error of a Client call is answered with; None for an unexpected one."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return None


class DashboardServer(WebServer):
    """Serves the dashboard for `client` on `host`:`port` (0: any free port).

    Without `token` only a loopback `host` is allowed (ConfigError otherwise, naming
    the fix); with one, every request must prove it knows it (see `access.py`).
    """

    def __init__(
        self, client: Client, host: str = "127.0.0.1", port: int = 8080, *, token: str | None = None
    ) -> None:
        super().__init__(host, port)
        self.client = client
        self.access = Access(token)
        self.access.check_bind(host)
        self.snapshots = Snapshots(client)
        self._page = _page()  # read once: a broken install fails at start, not per request
        self._closing = asyncio.Event()
        self._streams = 0

    @property
    def url(self) -> str:
        """Where the page is, once started."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def make_app(self) -> web.Application:
        app = self.application([self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/index.html", self._index)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/events", self._events)
        app.router.add_post(ACTION_PREFIX + "{name}", self._action)
        if self.access.required:
            app.router.add_get("/login", self._login_form)
            app.router.add_post("/login", self._login)
        return app

    async def start(self) -> None:
        """Listen; the port is in use (or not allowed) -> OSError."""
        self._closing.clear()
        await super().start()
        log.info("dashboard on %s (%s)", self.url, "token required" if self.access.required else "loopback")

    async def stop(self) -> None:
        """End the event streams, then stop listening."""
        self._closing.set()
        await super().stop()

    async def __aenter__(self) -> DashboardServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- checks -----------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Host and access checks first; every error as JSON, never a traceback."""
        try:
            self._check_host(request)
            denied = self._authenticate(request)
            if denied is not None:
                return denied
            return await handler(request)
        except HttpError as e:
            return json_error(e.status, e.message)
        except web.HTTPMethodNotAllowed:
            if request.path.startswith(ACTION_PREFIX):
                return json_error(405, "actions are POST requests")
            return json_error(405, f"{request.path} answers GET only")
        except web.HTTPNotFound:
            return json_error(404, f"nothing at {request.path}")
        except web.HTTPException:
            raise
        except Exception as e:
            return self._error(request, e)

    def _check_host(self, request: web.Request) -> None:
        if is_loopback(self.host) and not is_loopback(_host_name(request.headers.get("Host", ""))):
            raise HttpError(403, "this dashboard listens on loopback only; open it as localhost")

    def _authenticate(self, request: web.Request) -> web.Response | None:
        """None if the request may go on, else the 401."""
        if not self.access.required or request.path == "/login":
            return None
        if self.access.bearer(request.headers.get("Authorization", "")):
            return None
        if self._sid(request) is not None:
            return None
        if request.method in ("GET", "HEAD") and request.path in ("/", "/index.html"):
            return _login_page(401, "")
        return json_error(
            401,
            "this dashboard needs its token: send Authorization: Bearer TOKEN, or sign in on /login",
            {"WWW-Authenticate": 'Bearer realm="roger dashboard"'},
        )

    def _check_origin(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("Host", "").lower():
            raise HttpError(403, f"actions are accepted only from this dashboard's page, not from {origin}")
        if request.headers.get("Sec-Fetch-Site", "same-origin") in ("cross-site", "same-site"):
            raise HttpError(
                403, "actions are accepted only from this dashboard's page, not from another site"
            )
        sid = self._sid(request)
        if sid is not None and not self.access.csrf_matches(sid, request.headers.get(CSRF_HEADER, "")):
            raise HttpError(403, f"missing or wrong {CSRF_HEADER} header: reload the page and try again")

    # -- handlers ---------------------------------------------------------

    def _sid(self, request: web.Request) -> str | None:
        """The session id of a request signed in with a cookie (not with a Bearer token)."""
        if self.access.bearer(request.headers.get("Authorization", "")):
            return None
        return self.access.session(request.cookies.get(SESSION_COOKIE))

    async def _index(self, request: web.Request) -> web.Response:
        sid = self._sid(request)
        csrf = self.access.csrf(sid).encode() if sid is not None else b""
        return respond(200, HTML, self._page.replace(CSRF_PLACEHOLDER, csrf))

    async def _state(self, request: web.Request) -> web.Response:
        return json_response(200, await self.snapshots.get())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """The state about once a second as `data:` events; a failure as an `event: failure`
        with `{"error", "status"}`. Every stream shares the snapshots of `/api/state`."""
        if self._streams >= MAX_STREAMS:
            raise HttpError(503, f"{MAX_STREAMS} event streams are open already; poll /api/state instead")
        self._streams += 1
        try:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
            )
            await response.prepare(request)
            with contextlib.suppress(ConnectionError):
                await response.write(f"retry: {int(EVENT_INTERVAL * 1000)}\n\n".encode())
                while not self._closing.is_set():
                    await response.write(await self._event())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._closing.wait(), EVENT_INTERVAL)
            return response
        finally:
            self._streams -= 1

    async def _event(self) -> bytes:
        try:
            state = await self.snapshots.get()
        except Exception as e:
            status = status_of(e)
            if status is None:
                log.exception("dashboard /api/events failed")
            message = str(e) if status is not None else f"internal error ({type(e).__name__})"
            failure = json.dumps({"error": message, "status": status or 500})
            return f"event: failure\ndata: {failure}\n\n".encode()
        return b"data: " + json.dumps(state, default=str).encode() + b"\n\n"

    async def _action(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        action = ACTIONS.get(name)
        if action is None:
            raise HttpError(404, f"no action {name!r}; there are {', '.join(sorted(ACTIONS))}")
        self._check_origin(request)
        body = await json_body(request)
        result = await action(self.client, body)
        self.snapshots.invalidate()
        log.info("dashboard action %s %s: done", name, body)
        return json_response(200, {"ok": True, "action": name, **result})

    async def _login_form(self, request: web.Request) -> web.Response:
        return _login_page(200, "")

    async def _login(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            raise HttpError(415, "sign in with the form on /login")
        await read_body(request)  # bounded in size and time, then parsed from the cache
        form = await request.post()
        token = form.get("token")
        if not isinstance(token, str) or not self.access.token_matches(token):
            log.warning("dashboard sign-in with a wrong token from %s", request.remote)
            return _login_page(401, "wrong token")
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(
            SESSION_COOKIE, self.access.new_session(), httponly=True, samesite="Strict", path="/"
        )
        return response

    def _error(self, request: web.Request, error: Exception) -> web.Response:
        status = status_of(error)
        if status is not None:
            log.info("dashboard %s %s: %s", request.method, request.path, error)
            return json_error(status, str(error))
        log.exception("dashboard %s %s failed", request.method, request.path)
        return json_error(500, f"internal error ({type(error).__name__}): see the dashboard's log")
