"""What the dashboard shows: one JSON snapshot of the cluster, built from the Client.

The page polls it about once a second. Building it asks etcd (nodes, map,
paused queues, schedules and their states), every node (running jobs, over its control queue) and the
management API (every queue's counts, consumers and rates, one request each
whatever the number of partitions: `Client.overview`, which reads each queue
over AMQP instead when the API cannot be reached). `Snapshots` builds at most
one at a time and hands the same one to every browser that asks within
`max_age`: ten open tabs cost what one does.

A part that cannot be read is shown as unknown (`null`, the page prints "-")
and named under `problems`; only a cluster whose etcd cannot be read at all
fails the request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Any

from ..client import Client
from ..cluster.partitions import PartitionSpec
from ..control import RunningJobs
from ..errors import RogerError
from ..management import QueueRates
from ..overview import PartitionInfo, partition_info
from ..placement import chosen
from ..schedule_admin import ScheduleInfo

log = logging.getLogger(__name__)

RUNNING_TIMEOUT = 1.0  # a frozen node must not hold the page for longer than this
MAX_JOBS_PER_NODE = 200  # a node with more running jobs is shown with a count of the rest

Json = dict[str, Any]


async def snapshot(client: Client) -> Json:
    """The whole dashboard state, now."""
    problems: list[str] = []
    nodes = await client.nodes()  # etcd unreachable: nothing useful to show, let it fail
    specs = await client.partitions()
    schedules = await client.schedules()
    infos, running, rates = await asyncio.gather(
        _partition_infos(client, specs, problems),
        _running(client, problems),
        client.queue_rates(),
    )
    if rates is None:
        problems.append("management API unreachable: unacked counts, consumers and rates unknown")
    jobs_by_node: dict[str, list[Json]] = {n.name: [] for n in nodes}
    for job in running.jobs if running else ():
        jobs_by_node.setdefault(job.node, []).append(asdict(job))
    unreachable = {u.node: u.reason for u in running.unreachable} if running else {}
    members = {n.name: frozenset(n.labels) for n in nodes}
    runs = {s.name: chosen(s, members) for s in specs}  # with --replicas, K of the eligible
    return {
        "time": time.time(),
        "namespace": client.namespace,
        "management": rates is not None,
        "problems": problems,
        "nodes": [
            {
                **asdict(n),
                "labels": list(n.labels),
                "partitions": [s.name for s in specs if n.name in runs[s.name]],
                "running": jobs_by_node.get(n.name, [])[:MAX_JOBS_PER_NODE],
                "running_count": len(jobs_by_node.get(n.name, [])) if running else None,
                "unreachable": unreachable.get(n.name),
            }
            for n in nodes
        ],
        "partitions": [_partition(spec, infos.get(spec.name), rates) for spec in specs],
        "schedules": [_schedule(info) for info in schedules],
    }


def _schedule(info: ScheduleInfo) -> Json:
    """A schedule's entry: what it fires, when next, what fired last and where."""
    s = info.schedule
    return {
        "name": s.name,
        "partition": s.partition,
        "job": s.job,
        "when": s.describe(),
        "paused": s.paused,
        "catch_up": s.catch_up,
        "next_fire": info.next_fire,
        "last_fired": info.last_fired,
        "last_by": info.last_by or None,
        "fired": info.fired,
        "misfired": info.misfired,
    }


async def _partition_infos(
    client: Client, specs: list[PartitionSpec], problems: list[str]
) -> dict[str, PartitionInfo]:
    try:
        return {info.name: info for info in await client.overview(specs)}
    except RogerError as e:  # RabbitMQ away, or a partition removed meanwhile: show what the map says
        problems.append(f"queue counts unknown: {e}")
        return {}


async def _running(client: Client, problems: list[str]) -> RunningJobs | None:
    try:
        return await client.running(timeout=RUNNING_TIMEOUT)
    except RogerError as e:
        problems.append(f"running jobs unknown: {e}")
        return None


def _partition(spec: PartitionSpec, info: PartitionInfo | None, rates: dict[str, QueueRates] | None) -> Json:
    """The partition's entry; its queues unknown (every count `null`) without `info`."""
    queues = (info or partition_info(spec, {})).queues
    rows = []
    for q in queues:
        rate = rates.get(q.rabbitmq_queue) if rates is not None else None
        rows.append({**asdict(q), "rates": asdict(rate) if rate else None})
    return {
        "name": spec.name,
        "draining": spec.draining,
        "nodes": list(spec.nodes),
        "labels": list(spec.labels),
        "replicas": spec.replicas,
        "placement": info.placement if info else None,
        "queues": rows,
    }


class Snapshots:
    """At most one snapshot built at a time; a fresh one is shared by every caller."""

    def __init__(self, client: Client, max_age: float = 0.5) -> None:
        self.client = client
        self.max_age = max_age
        self._latest: tuple[float, Json] | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Json:
        """A snapshot at most `max_age` seconds old."""
        async with self._lock:
            if self._latest is None or time.monotonic() - self._latest[0] > self.max_age:
                self._latest = (time.monotonic(), await snapshot(self.client))
            return self._latest[1]

    def invalidate(self) -> None:
        """Forget the cached snapshot: an action just changed the cluster."""
        self._latest = None
