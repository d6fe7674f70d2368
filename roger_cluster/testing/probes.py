"""Readiness probes that speak the real protocols, and free ports to listen on.

Why it exists: an open TCP port says nothing about readiness. RabbitMQ binds
its listener before it accepts connections and etcd answers before it has a
leader, so each probe asks the server the question a client would: the AMQP
header, etcd's `/health`, the management API's overview. Every probe returns
a bool and never raises, so that `processes.wait_until` can poll it.
"""

from __future__ import annotations

import json
import socket
import urllib.request

from ..errors import ConfigError
from ..management import Management

__all__ = [
    "amqp_is_ready",
    "etcd_is_healthy",
    "free_ports",
    "management_is_ready",
    "rabbitmq_is_ready",
]

_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
_CONNECTION_START = b"\x00\x0a\x00\x0a"  # class 10 (connection), method 10 (start)


def amqp_is_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    """Send the AMQP 0-9-1 protocol header; a ready broker answers Connection.Start.

    An open TCP port is not enough: RabbitMQ binds its listener before it
    accepts connections (aio-pika's own conftest probes the same way).
    """
    data = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_AMQP_HEADER)
            while len(data) < 11:
                chunk = sock.recv(11 - len(data))
                if not chunk:
                    return False
                data += chunk
    except OSError:
        return False
    # a method frame (type 1) on channel 0 whose payload starts with class+method
    return data[0] == 1 and data[1:3] == b"\x00\x00" and data[7:11] == _CONNECTION_START


def etcd_is_healthy(host: str, port: int, timeout: float = 1.0) -> bool:
    """GET /health on the client port: true once the member has a leader and no alarm."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=timeout) as reply:
            body = json.loads(reply.read())
    except (OSError, ValueError):  # refused, 503 while electing, garbage
        return False
    return isinstance(body, dict) and body.get("health") == "true"


def management_is_ready(url: str, timeout: float = 1.0) -> bool:
    """Whether the management API at `url` (credentials in it) answers its overview.

    Blocking, on urllib: it runs where no event loop may be (`processes.wait_until`).
    """
    try:
        api = Management(url)  # parses the URL and its credentials; no I/O, no session
        request = urllib.request.Request(
            api.base_url + "/api/overview", headers={"Authorization": api.authorization}
        )
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body = json.loads(reply.read())
    except (OSError, ValueError, ConfigError):  # refused, 401/503 while booting, garbage
        return False
    return isinstance(body, dict) and "node" in body


def rabbitmq_is_ready(host: str, amqp_port: int, management_url: str) -> bool:
    """AMQP answers and so does the management API: what the tests need of a broker."""
    return amqp_is_ready(host, amqp_port) and management_is_ready(management_url)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free on `host` now (bound together, then released)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
