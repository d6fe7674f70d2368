"""Just enough HTTP/1.1 for the node's probes (`health.py`) and the dashboard: one request
per connection, no web framework.

A request body (bounded), headers, and JSON errors, which the dashboard's
buttons need. Every read has a deadline and a size limit, so a slow or hostile
client costs one connection for a few seconds, never the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field

from .errors import HttpError as HttpError  # re-exported: defined with the tree in errors.py

log = logging.getLogger(__name__)

READ_TIMEOUT = 5.0
MAX_BODY = 64 * 1024
MAX_HEADERS = 100

REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class Request:
    """One parsed request; header names are lower case."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json_body(self) -> dict[str, object]:
        """The body as a JSON object; HttpError 415/400 if it is not one."""
        kind = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            # Also what keeps a plain cross-site form from posting here: browsers
            # send JSON cross-origin only after a preflight this server never grants.
            raise HttpError(415, "send the action as Content-Type: application/json")
        try:
            data = json.loads(self.body or b"null")
        except ValueError as e:
            raise HttpError(400, f"the body is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise HttpError(400, "the body must be a JSON object")
        return data


@dataclass(frozen=True)
class Response:
    """What goes back: a status, a content type and the body."""

    status: int
    content_type: str
    body: bytes

    @classmethod
    def json(cls, status: int, data: object) -> Response:
        """A JSON response."""
        return cls(status, "application/json", json.dumps(data, default=str).encode())

    @classmethod
    def error(cls, status: int, message: str) -> Response:
        """`{"error": message}` with `status`."""
        return cls.json(status, {"error": message})


async def read_request(reader: asyncio.StreamReader) -> Request:
    """Read one request; HttpError for anything malformed or too large,
    TimeoutError or IncompleteReadError if the client goes quiet or away."""
    try:
        return await _read_request(reader)
    except ValueError:  # StreamReader.readline: a line longer than the reader's limit (64 KiB)
        raise HttpError(400, "request line or header too long") from None


async def _read_request(reader: asyncio.StreamReader) -> Request:
    async with asyncio.timeout(READ_TIMEOUT):
        line = await reader.readline()
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, "not an HTTP/1.x request")
        headers: dict[str, str] = {}
        while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
            if len(headers) >= MAX_HEADERS:
                raise HttpError(400, "too many headers")
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise HttpError(400, "malformed header line")
            headers[name.strip().lower()] = value.strip()
        body = await _read_body(reader, headers)
    return Request(parts[0].upper(), parts[1].split("?")[0], headers, body)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "transfer-encoding" in headers:
        raise HttpError(400, "chunked bodies are not accepted; send Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HttpError(400, "Content-Length is not a number") from None
    if length < 0:
        raise HttpError(400, "Content-Length is negative")
    if length > MAX_BODY:
        raise HttpError(413, f"the body may be at most {MAX_BODY} bytes")
    return await reader.readexactly(length) if length else b""


async def write_response(writer: asyncio.StreamWriter, response: Response, head_only: bool = False) -> None:
    """Send `response` and leave the connection to be closed."""
    head = (
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "X-Frame-Options: DENY\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode() + (b"" if head_only else response.body))
    await writer.drain()


class HttpServer:
    """Listens on `host`:`port` (0: any free port) and answers each request with `respond`."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def respond(self, request: Request) -> Response:
        """The response to one request; must not raise."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen; the port is in use (or not allowed) -> OSError."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            try:
                request = await read_request(reader)
                head_only = request.method == "HEAD"
                response = await self.respond(request)
            except HttpError as e:
                response = Response.error(e.status, e.message)
            except (TimeoutError, asyncio.IncompleteReadError):
                return  # the client went quiet or away: nobody to answer
            await write_response(writer, response, head_only)
        except ConnectionError as e:
            log.debug("HTTP client went away: %s", e)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
