"""The node's probe server on its own: paths, codes, bodies, content types and keep-alive.

No node is needed: the server takes the metrics and a readiness function.
A live node's probes are tested in tests/integration/test_health.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from roger_cluster.health import HealthServer
from roger_cluster.metrics import Metrics


@pytest.fixture
async def probes() -> AsyncIterator[tuple[str, list[str | None]]]:
    """A probe server on a free port, and the readiness answer it gives (changeable)."""
    why: list[str | None] = ["etcd does not answer"]
    metrics = Metrics()
    metrics.started("p", "default")
    server = HealthServer("127.0.0.1", 0, metrics, lambda: why[0])
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", why
    finally:
        await server.stop()


async def test_paths_codes_bodies_and_content_types(probes: tuple[str, list[str | None]]) -> None:
    base, why = probes
    async with aiohttp.ClientSession() as http:

        async def get(path: str, method: str = "GET") -> tuple[int, str, str]:
            async with http.request(method, base + path) as response:
                return response.status, response.headers["Content-Type"], await response.text()

        assert await get("/healthz") == (200, "text/plain", "ok\n")
        assert await get("/readyz") == (503, "text/plain", "etcd does not answer\n")
        why[0] = None
        assert await get("/readyz") == (200, "text/plain", "ready\n")
        status, kind, text = await get("/metrics")
        assert (status, kind) == (200, "text/plain; version=0.0.4; charset=utf-8")
        assert 'roger_jobs_started_total{partition="p",queue="default"} 1.0' in text
        assert await get("/nope") == (404, "text/plain", "not found\n")
        assert await get("/healthz", "POST") == (405, "text/plain", "only GET\n")
        assert await get("/healthz", "HEAD") == (200, "text/plain", "")
        connector = http.connector
        assert connector is not None and sum(len(c) for c in connector._conns.values()) == 1  # kept alive
