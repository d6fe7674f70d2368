"""The node's HTTP endpoints: /healthz, /readyz and /metrics (`roger-node --http`).

On aiohttp with the limits of `web.py` (shared with the dashboard), enough
for probes and Prometheus scrapes, with keep-alive so a scraper reuses its
connection. /healthz says the process serves requests; /readyz says the node
is connected to RabbitMQ and etcd, registered, and has applied the partition
map (503 with the reason otherwise). GET and HEAD only (405 otherwise);
anything else is a 404. Every body is plain text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from .metrics import Metrics
from .web import Handler, WebServer, respond

log = logging.getLogger(__name__)

Readiness = Callable[[], str | None]  # None when ready, else why not

TEXT = "text/plain"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@web.middleware
async def _plain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The router's 404 and 405 in the probes' own words."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        return respond(405, TEXT, b"only GET\n", {"Allow": "GET, HEAD"})
    except web.HTTPNotFound:
        return respond(404, TEXT, b"not found\n")


class HealthServer(WebServer):
    """Serves the endpoints on `host`:`port`."""

    def __init__(self, host: str, port: int, metrics: Metrics, readiness: Readiness) -> None:
        super().__init__(host, port)
        self.metrics = metrics
        self.readiness = readiness

    def make_app(self) -> web.Application:
        app = self.application([_plain_errors])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        """Listen; the port is in use (or not allowed) -> OSError."""
        await super().start()
        log.info("serving /healthz, /readyz and /metrics on http://%s:%d", self.host, self.port)

    async def _healthz(self, request: web.Request) -> web.Response:
        return respond(200, TEXT, b"ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        why = self.readiness()
        if why is None:
            return respond(200, TEXT, b"ready\n")
        return respond(503, TEXT, why.encode() + b"\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        return respond(200, METRICS_TYPE, self.metrics.render())
