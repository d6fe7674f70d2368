"""The dashboard's read-only queries beyond the state: history, one job, buried jobs, charts.

    GET /api/throughput                       the charts (charts.py)
    GET /api/history?partition=P&queue=&state=&class=&since=1h&limit=100
    GET /api/jobs/<id>?since=24h              a job's story, and its args if it is buried
    GET /api/buried?partition=P&queue=Q&limit=50

Each is one Client call (or the shared `Throughput`), with its query checked
here as rogerctl checks its flags: bad input is a 400 naming the parameter.
They are asked for when a view opens or its form is sent, never pushed every
second: a history read scans the stream from `since`, a buried read peeks the
queue.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from ..client import Client
from ..delays import parse_span
from ..errors import ConfigError, HttpError, UnknownQueue
from ..history import STATES, JobEvent, JobStory
from ..names import check_job_id, check_partition, check_queue

Json = dict[str, Any]
Query = dict[str, str]

MAX_LIMIT = 1000
DEFAULT_HISTORY_SINCE = "1h"
DEFAULT_JOB_SINCE = "24h"  # as `rogerctl job show`
BURIED_LOOKUP = 1000  # buried jobs peeked at most to find a job's args


def _since(query: Query, default: str) -> float:
    text = query.get("since") or default
    try:
        return time.time() - parse_span(text)
    except ConfigError as e:
        raise HttpError(400, f"since: {e}") from None


def _limit(query: Query, default: int) -> int:
    text = query.get("limit") or str(default)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise HttpError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def _required(query: Query, name: str) -> str:
    value = query.get(name)
    if not value:
        raise HttpError(400, f"missing parameter {name!r}")
    return value


def event_json(e: JobEvent) -> Json:
    """An event as the page gets it."""
    return asdict(e)


async def history(client: Client, query: Query) -> Json:
    """The filtered history table: the latest events of a partition, newest first."""
    partition = check_partition(_required(query, "partition"))
    queue = check_queue(query["queue"]) if query.get("queue") else None
    state = query.get("state") or None
    if state is not None and state not in STATES:
        raise HttpError(400, f"state must be one of {', '.join(STATES)}, got {state!r}")
    found = await client.job_history(
        partition,
        queue=queue,
        state=state,
        job_class=query.get("class") or None,
        since=_since(query, DEFAULT_HISTORY_SINCE),
        limit=_limit(query, 100),
    )
    return {"partition": partition, "events": [event_json(e) for e in found]}


async def job(client: Client, job_id: str, query: Query) -> Json:
    """A job's story (every event, where it is now) and, if it lies buried, its args."""
    job_id = check_job_id(job_id)
    story: JobStory = await client.job_story(job_id, _since(query, DEFAULT_JOB_SINCE))
    buried = await _buried_copy(client, story)
    return {
        "job_id": job_id,
        "state": story.state,
        "running_on": story.running_on,
        "events": [event_json(e) for e in story.events],
        "buried": buried,
        "args": buried["args"] if buried else None,
    }


async def _buried_copy(client: Client, story: JobStory) -> Json | None:
    """The job as it lies in its `.buried` queue, if its last event says it is there."""
    if not story.events or story.events[-1].kind not in ("buried", "refused"):
        return None
    last = story.events[-1]
    try:
        found = await client.buried(last.partition, last.queue, BURIED_LOOKUP)
    except UnknownQueue:
        return None
    return next(({**asdict(b), "partition": last.partition, "queue": last.queue} for b in found
                 if b.id == story.job_id), None)  # fmt: skip


async def buried(client: Client, query: Query) -> Json:
    """Up to `limit` buried jobs of a queue, oldest first, with their args and evidence."""
    partition = check_partition(_required(query, "partition"))
    queue = check_queue(_required(query, "queue"))
    found = await client.buried(partition, queue, _limit(query, 50))
    return {"partition": partition, "queue": queue, "jobs": [asdict(b) for b in found]}
