"""The dashboard's HTTP layer without any server: parsing, refusals, and input checks.

Everything here is answered before the Client does any I/O (constructing a
Client or a DashboardServer does none), so no etcd or RabbitMQ is needed.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from roger_cluster import Client
from roger_cluster.cluster.partitions import PartitionSpec
from roger_cluster.dashboard import DashboardServer
from roger_cluster.dashboard.state import _partition
from roger_cluster.http import MAX_BODY, HttpError, Request, read_request
from roger_cluster.management import QueueRates
from roger_cluster.overview import PartitionInfo, QueueInfo

LOCAL = {"host": "127.0.0.1:8080"}
JSON = {**LOCAL, "content-type": "application/json"}


def reader(data: bytes) -> asyncio.StreamReader:
    stream = asyncio.StreamReader()
    stream.feed_data(data)
    stream.feed_eof()
    return stream


async def test_a_request_is_read_with_its_headers_and_body() -> None:
    raw = b"POST /api/actions/pause?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}"
    request = await read_request(reader(raw))
    assert (request.method, request.path, request.headers["host"], request.body) == (
        "POST",
        "/api/actions/pause",
        "localhost",
        b"{}",
    )


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"hello\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (f"POST / HTTP/1.1\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode(), 413),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 400),
    ],
)
async def test_malformed_or_oversized_requests_are_refused(raw: bytes, status: int) -> None:
    with pytest.raises(HttpError) as refused:
        await read_request(reader(raw))
    assert refused.value.status == status


@pytest.fixture
def server() -> DashboardServer:
    """A dashboard whose cluster is unreachable: port 1 answers nothing."""
    return DashboardServer(Client("amqp://guest:guest@127.0.0.1:1/", "127.0.0.1:1"), "127.0.0.1", 0)


async def answer(server: DashboardServer, request: Request) -> tuple[int, dict[str, object]]:
    response = await server.respond(request)
    assert response.content_type == "application/json"
    return response.status, json.loads(response.body)


@pytest.mark.parametrize(
    ("request_", "status", "message"),
    [
        (Request("GET", "/", {"host": "evil.test"}), 403, "loopback"),
        (Request("GET", "/nope", LOCAL), 404, "nothing at /nope"),
        (Request("POST", "/api/state", LOCAL), 405, "GET only"),
        (Request("GET", "/api/actions/pause", LOCAL), 405, "POST"),
        (Request("POST", "/api/actions/nope", JSON, b"{}"), 404, "no action 'nope'"),
        (Request("POST", "/api/actions/pause", LOCAL, b"{}"), 415, "application/json"),
        (Request("POST", "/api/actions/pause", {**JSON, "origin": "http://evil.test"}, b"{}"), 403, "evil"),
        (Request("POST", "/api/actions/pause", JSON, b"{"), 400, "not valid JSON"),
        (Request("POST", "/api/actions/pause", JSON, b'{"queue": "q"}'), 400, "missing field 'partition'"),
        (
            Request("POST", "/api/actions/pause", JSON, b'{"partition": "a-b", "queue": "q"}'),
            400,
            "not allowed",
        ),
        (
            Request("POST", "/api/actions/cancel", JSON, b'{"partition": "p", "job_id": 5}'),
            400,
            "must be a str",
        ),
        (
            Request(
                "POST", "/api/actions/retry_buried", JSON, b'{"partition": "p", "queue": "q", "job_ids": [1]}'
            ),
            400,
            "list of strings",
        ),
        (
            Request(
                "POST", "/api/actions/start_partition", JSON, b'{"partition": "p", "queues": {"q": true}}'
            ),
            400,
            "whole number",
        ),
    ],
)
async def test_refusals_are_json_errors_given_before_any_io(
    server: DashboardServer, request_: Request, status: int, message: str
) -> None:
    got, body = await answer(server, request_)
    assert got == status and list(body) == ["error"], body
    assert message in str(body["error"])


async def test_an_unreachable_cluster_is_a_503_naming_it(server: DashboardServer) -> None:
    pause = Request("POST", "/api/actions/pause", JSON, b'{"partition": "p", "queue": "q"}')
    for request in (Request("GET", "/api/state", LOCAL), pause):
        status, body = await answer(server, request)
        assert status == 503, body
        assert str(body["error"]).startswith("cannot reach etcd at 127.0.0.1:1")
    await server.client.close()


async def test_the_page_is_served_from_the_package(server: DashboardServer) -> None:
    for host in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080"):
        response = await server.respond(Request("GET", "/", {"host": host}))
        assert response.status == 200, host
        assert response.content_type.startswith("text/html")
        assert b"<title>roger_cluster dashboard</title>" in response.body


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
