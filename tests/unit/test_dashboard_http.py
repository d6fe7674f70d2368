"""The dashboard's HTTP layer against an unreachable cluster: limits, refusals, access and CSRF.

Everything here is answered before the Client reaches a server (constructing
a Client or a DashboardServer does no I/O, and a cluster on port 1 answers
nothing), so no etcd or RabbitMQ is needed: the server listens on loopback
and is spoken to over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientResponse, test_utils, web

from roger_cluster import Client
from roger_cluster.cluster.partitions import PartitionSpec
from roger_cluster.dashboard import DashboardServer
from roger_cluster.dashboard.access import CSRF_HEADER, SESSION_COOKIE, Access, read_token
from roger_cluster.dashboard.state import _partition
from roger_cluster.errors import ConfigError
from roger_cluster.management import QueueRates
from roger_cluster.overview import PartitionInfo, QueueInfo
from roger_cluster.web import IDLE_TIMEOUT, MAX_BODY

Http = test_utils.TestClient[web.Request, web.Application]
JSON = {"Content-Type": "application/json"}
TOKEN = "correct-horse-battery-staple"
UNREACHABLE = "cannot reach etcd at 127.0.0.1:1"


def unreachable_client() -> Client:
    return Client("amqp://guest:guest@127.0.0.1:1/", "127.0.0.1:1")


@pytest.fixture
async def server() -> AsyncIterator[DashboardServer]:
    """A dashboard on loopback, without a token, whose cluster is unreachable."""
    client = unreachable_client()
    async with client, DashboardServer(client, "127.0.0.1", 0) as dashboard:
        yield dashboard


@pytest.fixture
async def http(server: DashboardServer) -> AsyncIterator[Http]:
    async with test_utils.TestClient(test_utils.TestServer(server.make_app())) as client:
        yield client


@pytest.fixture
async def guarded() -> AsyncIterator[Http]:
    """An HTTP client of a token-protected dashboard."""
    client = unreachable_client()
    dashboard = DashboardServer(client, "127.0.0.1", 0, token=TOKEN)
    async with client, test_utils.TestClient(test_utils.TestServer(dashboard.make_app())) as http:
        yield http


async def error(response: ClientResponse) -> tuple[int, str]:
    assert response.content_type == "application/json", await response.text()
    body = await response.json()
    assert list(body) == ["error"], body
    return response.status, str(body["error"])


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "message"),
    [
        ("GET", "/", {"Host": "evil.test"}, None, 403, "loopback"),
        ("GET", "/nope", {}, None, 404, "nothing at /nope"),
        ("POST", "/api/state", {}, None, 405, "GET only"),
        ("GET", "/api/actions/pause", {}, None, 405, "POST"),
        ("POST", "/api/actions/nope", JSON, b"{}", 404, "no action 'nope'"),
        ("POST", "/api/actions/pause", {}, b"{}", 415, "application/json"),
        ("POST", "/api/actions/pause", {**JSON, "Origin": "http://evil.test"}, b"{}", 403, "evil"),
        ("POST", "/api/actions/pause", {**JSON, "Sec-Fetch-Site": "cross-site"}, b"{}", 403, "another site"),
        ("POST", "/api/actions/pause", JSON, b"{", 400, "not valid JSON"),
        ("POST", "/api/actions/pause", JSON, b'{"queue": "q"}', 400, "missing field 'partition'"),
        ("POST", "/api/actions/pause", JSON, b'{"partition": "a-b", "queue": "q"}', 400, "not allowed"),
        ("POST", "/api/actions/cancel", JSON, b'{"partition": "p", "job_id": 5}', 400, "must be a str"),
        (
            "POST",
            "/api/actions/retry_buried",
            JSON,
            b'{"partition": "p", "queue": "q", "job_ids": [1]}',
            400,
            "list of strings",
        ),
        (
            "POST",
            "/api/actions/start_partition",
            JSON,
            b'{"partition": "p", "queues": {"q": true}}',
            400,
            "whole number",
        ),
        ("POST", "/api/actions/pause", JSON, b" " * (MAX_BODY + 1), 413, "at most"),
    ],
)
async def test_refusals_are_json_errors_given_before_any_io(
    http: Http,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    message: str,
) -> None:
    async with http.request(method, path, headers=headers, data=body) as response:
        got, text = await error(response)
    assert got == status, text
    assert message in text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_an_unreachable_cluster_is_a_503_naming_it(
    http: Http,
) -> None:
    pause = http.post("/api/actions/pause", headers=JSON, data=b'{"partition": "p", "queue": "q"}')
    for request in (http.get("/api/state"), pause):
        async with request as response:
            status, text = await error(response)
        assert status == 503 and text.startswith(UNREACHABLE), text


async def test_the_page_is_served_from_the_package_over_one_kept_alive_connection(
    http: Http,
) -> None:
    for host in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080"):
        async with http.get("/", headers={"Host": host}) as response:
            assert response.status == 200, host
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            page = await response.text()
        assert "<title>roger_cluster dashboard</title>" in page
        assert '<meta name="roger-csrf" content="">' in page  # no token: no session, no CSRF token
    connector = http.session.connector
    assert connector is not None and sum(len(c) for c in connector._conns.values()) == 1


async def test_the_event_stream_pushes_a_failure_while_the_cluster_is_unreachable(
    http: Http,
) -> None:
    async with http.get("/api/events") as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await response.content.readline() == b"retry: 1000\n"
        assert await response.content.readline() == b"\n"
        assert await response.content.readline() == b"event: failure\n"
        data = json.loads((await response.content.readline()).removeprefix(b"data: "))
    assert data["status"] == 503 and data["error"].startswith(UNREACHABLE)


async def raw(server: DashboardServer, request: bytes) -> bytes:
    """`request` sent as is over a fresh connection; whatever comes back until it closes."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), IDLE_TIMEOUT + 5)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"hello\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nno colon here\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", b"400"),
    ],
)
async def test_malformed_requests_are_refused_and_the_connection_closed(
    server: DashboardServer, request_: bytes, status: bytes
) -> None:
    answer = await raw(server, request_)
    assert answer.split(b" ")[1] == status, answer[:200]


async def test_a_silent_client_is_disconnected_after_the_idle_timeout(server: DashboardServer) -> None:
    assert await raw(server, b"GET / HTTP/1.1\r\n") == b""  # headers never finished: closed, no answer


# -- access: token, sign-in, CSRF ------------------------------------------------------------


def test_a_non_loopback_address_without_a_token_is_refused_naming_the_fix() -> None:
    for host in ("0.0.0.0", "::", "192.0.2.7", "dashboard.example"):
        with pytest.raises(ConfigError, match="--token-file PATH"):
            DashboardServer(unreachable_client(), host, 0)
    DashboardServer(unreachable_client(), "0.0.0.0", 0, token=TOKEN)  # with a token: fine
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        DashboardServer(unreachable_client(), host, 0)


def test_a_token_is_read_from_its_file_and_must_be_long_enough(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert read_token(path) == TOKEN
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16"):
        read_token(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(tmp_path / "missing")


def test_sessions_are_signed_with_the_token_and_csrf_tokens_are_per_session() -> None:
    access, other = Access(TOKEN), Access("another-token-of-16+")
    cookie = access.new_session()
    sid = access.session(cookie)
    assert sid is not None and other.session(cookie) is None
    assert access.session(sid + ".0" * 32) is None and access.session("") is None
    assert access.csrf(sid) != access.csrf(access.session(access.new_session()) or "")
    assert access.bearer(f"Bearer {TOKEN}") and not access.bearer(f"Basic {TOKEN}")
    assert not access.bearer("Bearer nope") and not Access().bearer(f"Bearer {TOKEN}")


async def test_without_the_token_every_request_is_401_and_the_page_offers_the_sign_in_form(
    guarded: Http,
) -> None:
    for path in ("/api/state", "/api/events", "/nope"):
        async with guarded.get(path) as response:
            status, text = await error(response)
        assert status == 401 and "Authorization: Bearer" in text, path
    async with guarded.post("/api/actions/pause", headers=JSON, data=b"{}") as response:
        assert (await error(response))[0] == 401
    async with guarded.get("/api/state", headers={"Authorization": "Bearer wrong-token-wrong"}) as response:
        assert (await error(response))[0] == 401
    async with guarded.get("/") as response:
        assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        assert 'action="/login"' in await response.text()


async def test_with_the_bearer_token_requests_go_through(
    guarded: Http,
) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with guarded.get("/api/state", headers=bearer) as response:
        status, text = await error(response)
    assert status == 503 and text.startswith(UNREACHABLE)  # past the checks, on to the cluster
    body = b'{"partition": "p", "queue": "q"}'
    async with guarded.post("/api/actions/pause", headers={**bearer, **JSON}, data=body) as response:
        assert (await error(response))[0] == 503  # a script sends no cookie: no CSRF token needed


async def test_a_browser_signs_in_once_and_its_actions_need_the_csrf_token(
    guarded: Http,
) -> None:
    async with guarded.post("/login", data={"token": "not-the-token-at-all"}) as response:
        assert response.status == 401 and "wrong token" in await response.text()
    assert SESSION_COOKIE not in {c.key for c in guarded.session.cookie_jar}

    async with guarded.post("/login", data={"token": TOKEN}, allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (303, "/")
        cookie = response.cookies[SESSION_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
    async with guarded.get("/") as response:
        assert response.status == 200
        found = re.search(r'<meta name="roger-csrf" content="([0-9a-f]{64})">', await response.text())
    assert found is not None
    async with guarded.get("/api/state") as response:
        assert (await error(response))[0] == 503  # signed in: on to the cluster

    body = b'{"partition": "p", "queue": "q"}'
    for headers, status in [
        (JSON, 403),  # the cookie alone, as a cross-site request would carry it
        ({**JSON, CSRF_HEADER: "0" * 64}, 403),
        ({**JSON, CSRF_HEADER: found.group(1)}, 503),  # accepted; the cluster is what fails
    ]:
        async with guarded.post("/api/actions/pause", headers=headers, data=body) as response:
            got, text = await error(response)
        assert got == status, text
        assert status == 503 or CSRF_HEADER in text


# -- state rows ------------------------------------------------------------------------------


def test_a_queue_row_carries_its_rates_or_none_when_unknown() -> None:
    spec = PartitionSpec("p", {"default": 2, "other": 1})
    info = PartitionInfo(
        "p",
        [
            QueueInfo("default", "p-default", 2, 3, 1, 1, False, 0, None),
            QueueInfo("other", "p-other", 1, 0, 0, 0, False, 0, None),
        ],
    )
    row = _partition(spec, info, {"p-default": QueueRates(1.5, 1.0, 0.5)})
    assert row["queues"][0]["rates"] == {"publish": 1.5, "deliver": 1.0, "ack": 0.5}
    assert row["queues"][0]["ready"] == 3
    assert row["queues"][1]["rates"] is None  # no traffic seen yet
    assert _partition(spec, info, None)["queues"][0]["rates"] is None


def test_a_partition_whose_queues_could_not_be_read_shows_them_unknown() -> None:
    row = _partition(PartitionSpec("p", {"default": 2}), None, None)
    [queue] = row["queues"]
    assert (queue["name"], queue["rabbitmq_queue"], queue["concurrency"]) == ("default", "p-default", 2)
    assert queue["ready"] is queue["unacked"] is queue["paused"] is queue["rates"] is None
