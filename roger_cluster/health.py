"""The node's HTTP endpoints: /healthz, /readyz and /metrics (`roger-node --http`).

A few lines of asyncio HTTP/1.1, enough for probes and Prometheus scrapes,
so a node needs no web framework. /healthz says the process serves requests;
/readyz says the node is connected to RabbitMQ and etcd, registered, and has
applied the partition map (503 with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .metrics import Metrics

log = logging.getLogger(__name__)

Readiness = Callable[[], str | None]  # None when ready, else why not


class HealthServer:
    """Serves the endpoints on `host`:`port`."""

    def __init__(self, host: str, port: int, metrics: Metrics, readiness: Readiness) -> None:
        self.host = host
        self.port = port
        self.metrics = metrics
        self.readiness = readiness
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; the port is in use (or not allowed) -> OSError."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        log.info("serving /healthz, /readyz and /metrics on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def _respond(self, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            why = self.readiness()
            return (
                (200, "text/plain", b"ready\n") if why is None else (503, "text/plain", why.encode() + b"\n")
            )
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render()
        return 404, "text/plain", b"not found\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (line := await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                del line  # headers are not needed
            parts = request.decode("latin-1").split()
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, kind, body = 405, "text/plain", b"only GET\n"
            else:
                status, kind, body = self._respond(parts[1].split("?")[0])
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
            head = (
                f"HTTP/1.1 {status} {reason[status]}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (body if parts[:1] != ["HEAD"] else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError) as e:
            log.debug("health request failed: %s", e)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
