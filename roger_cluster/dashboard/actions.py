"""The dashboard's operator actions: each a POST with a JSON object, checked, then one Client call.

`POST /api/actions/<name>`:

| name | body | does |
|---|---|---|
| `pause` | `{"partition", "queue"}` | `Client.pause_queue` |
| `resume` | `{"partition", "queue"}` | `Client.resume_queue` |
| `cancel` | `{"partition", "job_id"}` | `Client.cancel` |
| `retry_buried` | `{"partition", "queue", "job_ids"?}` | `Client.retry_buried` |
| `start_partition` | `{"partition", "queues": {"q": n}, "nodes"?, "labels"?}` | `Client.set_partition` |
| `stop_partition` | `{"partition", "drain"?, "timeout"?}` | `Client.stop_partition` |
| `pause_schedule` | `{"schedule"}` | `Client.pause_schedule` |
| `resume_schedule` | `{"schedule"}` | `Client.resume_schedule` |

Every field is checked here before anything is written, with the same name
rules as rogerctl, so bad input is a 400 naming the field and changes
nothing; a partition, queue or schedule that does not exist is a 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..client import Client
from ..cluster.partitions import PartitionSpec
from ..errors import HttpError, UnknownPartition
from ..names import check_concurrency, check_job_id, check_partition, check_queue, check_schedule

Body = dict[str, object]
Action = Callable[[Client, Body], Awaitable[dict[str, Any]]]

DEFAULT_DRAIN_TIMEOUT = 30.0
MAX_DRAIN_TIMEOUT = 120.0  # a drain waits inside the request; keep it shorter than a proxy's timeout


def _field(body: Body, name: str, kind: type, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise HttpError(400, f"missing field {name!r}")
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise HttpError(400, f"field {name!r} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _strings(body: Body, name: str) -> list[str] | None:
    values = _field(body, name, list, required=False)
    if values is None:
        return None
    if not all(isinstance(v, str) for v in values):
        raise HttpError(400, f"field {name!r} must be a list of strings")
    return [str(v) for v in values]


def _partition(body: Body) -> str:
    return check_partition(_field(body, "partition", str))


def _queue(body: Body) -> str:
    return check_queue(_field(body, "queue", str))


async def _spec(client: Client, partition: str) -> PartitionSpec:
    for spec in await client.partitions():
        if spec.name == partition:
            return spec
    raise UnknownPartition(f"no partition {partition!r}")


async def _existing_queue(client: Client, body: Body) -> tuple[str, str]:
    partition, queue = _partition(body), _queue(body)
    if queue not in (await _spec(client, partition)).queues:
        raise UnknownPartition(f"partition {partition!r} has no queue {queue!r}")
    return partition, queue


async def pause(client: Client, body: Body) -> dict[str, Any]:
    partition, queue = await _existing_queue(client, body)
    await client.pause_queue(partition, queue)
    return {"partition": partition, "queue": queue, "paused": True}


async def resume(client: Client, body: Body) -> dict[str, Any]:
    # No existence check: a queue paused before its partition was stopped can still be resumed.
    partition, queue = _partition(body), _queue(body)
    was_paused = await client.resume_queue(partition, queue)
    return {"partition": partition, "queue": queue, "paused": False, "was_paused": was_paused}


async def cancel(client: Client, body: Body) -> dict[str, Any]:
    partition, job_id = _partition(body), check_job_id(_field(body, "job_id", str))
    await client.cancel(partition, job_id)
    return {"partition": partition, "job_id": job_id, "cancelled": True}


async def retry_buried(client: Client, body: Body) -> dict[str, Any]:
    job_ids = _strings(body, "job_ids")  # every field checked before the first request
    partition, queue = await _existing_queue(client, body)
    moved = await client.retry_buried(partition, queue, job_ids)
    return {"partition": partition, "queue": queue, "moved": moved}


async def start_partition(client: Client, body: Body) -> dict[str, Any]:
    partition = _partition(body)
    raw = _field(body, "queues", dict)
    if not raw:
        raise HttpError(400, "field 'queues' must name at least one queue, e.g. {\"default\": 10}")
    queues = {check_queue(str(q)): check_concurrency(str(q), n) for q, n in raw.items()}
    spec = await client.set_partition(
        partition, queues, nodes=_strings(body, "nodes") or (), labels=_strings(body, "labels") or ()
    )
    return {
        "partition": spec.name,
        "queues": dict(spec.queues),
        "nodes": list(spec.nodes),
        "labels": list(spec.labels),
    }


async def stop_partition(client: Client, body: Body) -> dict[str, Any]:
    partition = _partition(body)
    drain = bool(_field(body, "drain", bool, required=False))
    timeout = body.get("timeout", DEFAULT_DRAIN_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_DRAIN_TIMEOUT
    ):
        raise HttpError(400, f"field 'timeout' must be seconds, above 0 and at most {MAX_DRAIN_TIMEOUT:g}")
    await client.stop_partition(partition, drain=drain, timeout=float(timeout))
    return {"partition": partition, "stopped": True, "drained": drain}


async def pause_schedule(client: Client, body: Body) -> dict[str, Any]:
    name = check_schedule(_field(body, "schedule", str))
    await client.pause_schedule(name)
    return {"schedule": name, "paused": True}


async def resume_schedule(client: Client, body: Body) -> dict[str, Any]:
    name = check_schedule(_field(body, "schedule", str))
    await client.resume_schedule(name)
    return {"schedule": name, "paused": False}


ACTIONS: dict[str, Action] = {
    "pause": pause,
    "resume": resume,
    "cancel": cancel,
    "retry_buried": retry_buried,
    "start_partition": start_partition,
    "stop_partition": stop_partition,
    "pause_schedule": pause_schedule,
    "resume_schedule": resume_schedule,
}
