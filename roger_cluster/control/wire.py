"""The control protocol on the wire: requests, replies, the ops and their answers.

Wire format, msgpack, content type `application/x-msgpack`:

    request  {"v": 1, "op": "running", "args": {"partition": "myapp"}}
    reply    {"v": 1, "node": "n1", "ok": true, "result": ...}
             {"v": 1, "node": "n1", "ok": false, "error": "unknown op 'frob'"}

The ops: `ping` (answers `{"time": ...}`) and `running` (answers a list of
running-job maps, read back by `RunningJob.from_wire`). No I/O here: both
sides (`server.py`, `client.py`) encode and decode through this module only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import BrokerError, DecodeError

CONTROL_VERSION = 1
PING = "ping"
RUNNING = "running"


class RemoteError(BrokerError):
    """A node answered a control request with an error."""


def encode_request(op: str, args: Mapping[str, Any]) -> bytes:
    """A request body."""
    body: bytes = msgpack.packb({"v": CONTROL_VERSION, "op": op, "args": dict(args)}, use_bin_type=True)
    return body


def decode_request(body: bytes) -> tuple[str, dict[str, Any]]:
    """(op, args) of a request body; DecodeError if it is not one."""
    fields = _unpack(body, "request")
    op, args = fields.get("op"), fields.get("args", {})
    if not isinstance(op, str) or not isinstance(args, dict):
        raise DecodeError("control request needs a string 'op' and a map 'args'")
    return op, args


def encode_reply(node: str, result: Any = None, error: str | None = None) -> bytes:
    """A reply body: a result, or an error."""
    fields: dict[str, Any] = {"v": CONTROL_VERSION, "node": node, "ok": error is None}
    if error is None:
        fields["result"] = result
    else:
        fields["error"] = error
    body: bytes = msgpack.packb(fields, use_bin_type=True, default=str)
    return body


def decode_reply(body: bytes) -> Any:
    """The result of a reply body; DecodeError for a bad reply, RemoteError for an error reply."""
    fields = _unpack(body, "reply")
    if fields.get("ok") is True:
        return fields.get("result")
    raise RemoteError(str(fields.get("error", "the node answered with an error")))


def _unpack(body: bytes, what: str) -> dict[str, Any]:
    try:
        fields = msgpack.unpackb(body, raw=False)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"control {what} is not valid msgpack: {e}") from e
    if not isinstance(fields, dict) or fields.get("v") != CONTROL_VERSION:
        raise DecodeError(f"control {what} is not a version {CONTROL_VERSION} map")
    return fields


@dataclass(frozen=True)
class RunningJob:
    """A job running on a node, as that node reported it (one entry of a `running` answer)."""

    id: str
    """The job id."""
    job: str
    """The job class, `module:Class`."""
    partition: str
    """Its partition."""
    queue: str | None
    """Its queue, if known."""
    node: str
    """The node running it."""
    retry_count: int
    """Retries before this run."""
    enqueued_at: float | None
    """When it was first enqueued (Unix time), if known."""
    started_at: float  # the node's wall clock
    """When this run started, by the node's wall clock (Unix time)."""
    elapsed: float  # seconds, when the node answered
    """Seconds it had run when the node answered."""

    @classmethod
    def from_wire(cls, node: str, data: object) -> RunningJob:
        """Read one entry of a `running` answer; DecodeError if malformed."""
        if not isinstance(data, dict):
            raise DecodeError(f"node {node} sent a running job that is not a map")
        try:
            return cls(
                id=str(data["id"]),
                job=str(data["job"]),
                partition=str(data["partition"]),
                queue=None if data.get("queue") is None else str(data["queue"]),
                node=node,
                retry_count=int(data.get("retry_count") or 0),
                enqueued_at=None if data.get("enqueued_at") is None else float(data["enqueued_at"]),
                started_at=float(data["started_at"]),
                elapsed=float(data["elapsed"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DecodeError(f"node {node} sent a malformed running job: {e!r}") from e
