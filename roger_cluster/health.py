"""The node's HTTP endpoints: /healthz, /readyz and /metrics (`roger-node --http`).

On the package's own small HTTP server (`http.py`, shared with the
dashboard), enough for probes and Prometheus scrapes: a node needs no web
framework. /healthz says the process serves requests;
/readyz says the node is connected to RabbitMQ and etcd, registered, and has
applied the partition map (503 with the reason otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .http import HttpServer, Request, Response
from .metrics import Metrics

log = logging.getLogger(__name__)

Readiness = Callable[[], str | None]  # None when ready, else why not


class HealthServer(HttpServer):
    """Serves the endpoints on `host`:`port`."""

    def __init__(self, host: str, port: int, metrics: Metrics, readiness: Readiness) -> None:
        super().__init__(host, port)
        self.metrics = metrics
        self.readiness = readiness

    async def start(self) -> None:
        """Listen; the port is in use (or not allowed) -> OSError."""
        await super().start()
        log.info("serving /healthz, /readyz and /metrics on http://%s:%d", self.host, self.port)

    async def respond(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, "text/plain", b"only GET\n")
        if request.path == "/healthz":
            return Response(200, "text/plain", b"ok\n")
        if request.path == "/readyz":
            why = self.readiness()
            if why is None:
                return Response(200, "text/plain", b"ready\n")
            return Response(503, "text/plain", why.encode() + b"\n")
        if request.path == "/metrics":
            return Response(200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render())
        return Response(404, "text/plain", b"not found\n")
