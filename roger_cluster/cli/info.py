"""`rogerctl job running|queued`: what the cluster is doing now, read without changing it.

`job running` asks every live node over its control queue (see
`roger_cluster/control/`); a node that does not answer in time is named on
stderr (and under "unreachable" with `--json`), never silently left out.
`job queued` peeks at a partition queue; its help says exactly what a peek
does to the messages, because it is not quite nothing.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from ..client import Client
from ..control import DEFAULT_TIMEOUT
from ..names import check_partition, check_queue
from ..overview import QueueInfo
from .output import Output

QUEUED_HELP = """\
List the jobs waiting in a partition queue, next in line first, without
taking them for good.

A peek is not free. rogerctl takes up to --limit messages from the queue
(basic.get, unacknowledged) and hands them all back when it closes its
channel, or when its connection drops: no job is lost or consumed. Handing
back is RabbitMQ's requeue, and that can reorder:

- on a quorum queue (the default queue type; seen on RabbitMQ 3.10) the
  peeked jobs go back at the END of the queue, behind the jobs that were not
  peeked: peeking the first N jobs of a longer queue makes them run after the
  rest. A classic queue puts them back in their place. Peeking the whole
  queue (--limit at least its depth) keeps their order among themselves;
- a job enqueued while they are out can get ahead of them;
- they come back flagged redelivered, and a quorum queue raises their
  x-delivery-count (it matters only under a delivery-limit policy).

While taken (milliseconds), no node can start them. Jobs of an execution key
that wait for their turn are in the key's waiting queue, not listed here.
"""


def duration(seconds: float) -> str:
    """`4.2s`, `3m05s`, `2h01m`: short and readable."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _one_line(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


async def cmd_job_running(client: Client, args: argparse.Namespace, out: Output) -> None:
    partition = check_partition(args.partition) if args.partition else None
    found = await client.running(partition, timeout=args.timeout)
    out.table(
        ["ID", "CLASS", "PARTITION", "QUEUE", "NODE", "STARTED", "ELAPSED"],
        [
            [j.id, j.job, j.partition, j.queue, j.node, out.time(j.started_at), duration(j.elapsed)]
            for j in found.jobs
        ],
        {
            "jobs": [asdict(j) for j in found.jobs],
            "unreachable": [asdict(u) for u in found.unreachable],
            "nodes": found.nodes,
        },
    )
    if not found.nodes:
        out.warn("no live node in the cluster")
    for node in found.unreachable:
        out.warn(f"node {node.node} is unreachable: {node.reason}")


async def cmd_job_queued(client: Client, args: argparse.Namespace, out: Output) -> None:
    partition, queue = check_partition(args.partition), check_queue(args.queue)
    jobs = await client.queued(partition, queue, args.limit)
    out.table(
        ["#", "ID", "CLASS", "ENQUEUED", "RETRIES", "ARGS"],
        [
            [
                i,
                j.id,
                j.job,
                out.time(j.enqueued_at) if j.enqueued_at else None,
                j.retry_count,
                _one_line(j.args) if j.error is None else f"(unreadable: {j.error})",
            ]
            for i, j in enumerate(jobs, 1)
        ],
        [asdict(j) for j in jobs],
    )


def add_job_info_commands(jobs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`job running` and `job queued` under rogerctl's `job` command."""
    running = jobs.add_parser(
        "running",
        help="list the jobs running on every node now (asks each node; names those that do not answer)",
        description="List the jobs running now, asking every live node over RabbitMQ. A node that"
        " does not answer within --timeout is reported unreachable (on stderr; under"
        ' "unreachable" with --json); the exit code stays 0.',
    )
    running.add_argument("partition", nargs="?", metavar="PARTITION", help="only jobs of this partition")
    running.add_argument(
        "--timeout",
        type=_positive(float),
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the nodes' answers (default %(default)g)",
    )
    running.set_defaults(run=cmd_job_running)
    queued = jobs.add_parser(
        "queued",
        help="list jobs waiting in a queue, next first, without taking them (a peek may reorder: see --help)",
        description=QUEUED_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    queued.add_argument("partition", metavar="PARTITION", help="partition name")
    queued.add_argument("queue", metavar="QUEUE", help="queue of the partition")
    queued.add_argument(
        "--limit", type=_positive(int), default=100, help="at most this many (default %(default)s)"
    )
    queued.set_defaults(run=cmd_job_queued)


PARTITION_SHOW_HEADERS = [
    "QUEUE",
    "RABBITMQ QUEUE",
    "CONCURRENCY",
    "PAUSED",
    "READY",
    "UNACKED",
    "BURIED",
    "CONSUMERS",
    "NODES",
]


def queue_row(q: QueueInfo) -> list[Any]:
    """A `partition show` row; `-` where the cluster cannot tell (management API down).

    Under NODES, a paused queue says so and names the nodes that consume it on resume.
    """
    paused = None if q.paused is None else ("yes" if q.paused else "no")
    nodes = None if q.consumer_nodes is None else ",".join(c.node for c in q.consumer_nodes) or "none"
    if q.paused:
        placed = ",".join(q.placed_on or []) or "no live node"
        nodes = f"paused ({placed} on resume)"
    return [q.name, q.rabbitmq_queue, q.concurrency, paused, q.ready, q.unacked, q.buried, q.consumers, nodes]
