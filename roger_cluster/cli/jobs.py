"""`rogerctl job enqueue|cancel|scheduled|buried|retry-buried|purge-buried` (and, from
`info.py`, `job running|queued`; from `history.py`, `job show|history`): one job, the
delayed jobs of a partition, or the buried jobs of one queue.

`job enqueue` refuses what cannot run: a class missing from a module rogerctl
can import (exit 2), a partition not in the map or a queue it does not have
(exit 4, unless `--force`). A module it cannot import is only a warning: the
app's code may live on the nodes alone. `ARGS` may be `@FILE` or `-` (stdin)
for arguments too big for a command line. `--in 15m` / `--at ISO-TIME` delay it
(exit 2 for a malformed or too long delay, or a time without its UTC offset).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ..client import Client
from ..codec import JobMessage
from ..delays import check_at, describe_max, parse_duration
from ..errors import ConfigError, UnknownPartition, UnknownQueue
from ..job import Job, new_job_id
from ..names import buried_queue_name, check_partition, check_queue
from ..scheduled import READ_CAP
from .history import add_history_commands
from .info import add_job_info_commands
from .output import Output
from .progress import Progress


def add_job_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`job ...` under rogerctl's top-level commands."""
    job = commands.add_parser("job", help="enqueue, cancel, inspect and retry jobs")
    jcmds = job.add_subparsers(dest="action", required=True, metavar="ACTION")
    enqueue = jcmds.add_parser("enqueue", help="enqueue a job; prints its id")
    enqueue.add_argument("partition", metavar="PARTITION", help="partition name")
    enqueue.add_argument("job", metavar="MODULE:CLASS", help="the job class, e.g. myapp.jobs:SendMail")
    enqueue.add_argument(
        "args",
        nargs="?",
        default="null",
        metavar="ARGS_JSON",
        help="its arguments as JSON (default null); @FILE reads them from a file, - from stdin",
    )
    enqueue.add_argument("--queue", help="queue of the partition (default: the job class's)")
    enqueue.add_argument(
        "--force",
        action="store_true",
        help="enqueue even if the partition is not started or has no such queue in the map"
        " (the job waits in its RabbitMQ queue, which must exist)",
    )
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument(
        "--in",
        dest="delay",
        metavar="DURATION",
        help=f"run it after this long: 90s, 15m, 2h, 3d, 1h30m (at most {describe_max()})",
    )
    when.add_argument(
        "--at",
        metavar="TIME",
        help="run it at this time, ISO 8601 with its UTC offset: 2026-12-24T09:00:00+01:00",
    )
    enqueue.set_defaults(run=cmd_job_enqueue)
    cancel = jcmds.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("partition", metavar="PARTITION", help="partition name")
    cancel.add_argument("job_id", metavar="JOB_ID", help="the id enqueue printed")
    cancel.set_defaults(run=cmd_job_cancel)
    scheduled = jcmds.add_parser(
        "scheduled",
        help="list what waits in the delay levels for a partition: delayed jobs and retries",
        description="List the delayed jobs and the retries waiting for a partition, soonest first,"
        " with their count per delay band. The delay levels are read whole and given back in"
        " their order, so nothing is reordered or taken; a level holding more than"
        f" {READ_CAP} messages is only counted (its jobs may belong to any partition).",
    )
    scheduled.add_argument("partition", metavar="PARTITION", help="partition name")
    scheduled.add_argument(
        "--limit", type=int, default=100, help="list at most this many (default %(default)s)"
    )
    scheduled.set_defaults(run=cmd_job_scheduled)
    buried = jcmds.add_parser("buried", help="list buried jobs of a queue, without taking them")
    buried.add_argument("partition", metavar="PARTITION", help="partition name")
    buried.add_argument("queue", metavar="QUEUE", help="queue of the partition")
    buried.add_argument("--limit", type=int, default=100, help="at most this many (default %(default)s)")
    buried.set_defaults(run=cmd_job_buried)
    retry = jcmds.add_parser("retry-buried", help="put buried jobs (all, or the ids given) back")
    retry.add_argument("partition", metavar="PARTITION", help="partition name")
    retry.add_argument("queue", metavar="QUEUE", help="queue of the partition")
    retry.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="only these jobs (default: all)")
    retry.set_defaults(run=cmd_job_retry_buried)
    purge = jcmds.add_parser("purge-buried", help="delete every buried job of a queue")
    purge.add_argument("partition", metavar="PARTITION", help="partition name")
    purge.add_argument("queue", metavar="QUEUE", help="queue of the partition")
    purge.set_defaults(run=cmd_job_purge_buried)
    add_job_info_commands(jcmds)
    add_history_commands(jcmds)


def json_args(text: str) -> Any:
    """ARGS_JSON: JSON text, `@FILE` (a file holding it) or `-` (stdin), for arguments
    too big for a command line; ConfigError if unreadable or not JSON."""
    source = "job arguments"
    if text == "-":
        try:
            text, source = sys.stdin.read(), "job arguments on stdin"
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read job arguments from stdin: {e}") from None
    elif text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text, source = f.read(), f"job arguments in {text[1:]}"
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read job arguments from {text[1:]!r}: {e}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{source} are not valid JSON: {e}") from None


def job_message(path: str, args: Any, queue: str | None, warn: Callable[[str], None]) -> JobMessage:
    """The message for `rogerctl job enqueue`, from the class if its module can be imported here
    (see `job_class`)."""
    cls = job_class(path, warn, "enqueued")
    if cls is None:
        return JobMessage(new_job_id(), path, args, check_queue(queue or Job.queue))
    return JobMessage.from_job(cls.create(args), queue)


def job_class(path: str, warn: Callable[[str], None], done: str) -> type[Job] | None:
    """The Job class `path` names, if its module can be imported here, else None.

    A module that imports but has no such Job class is refused (ConfigError): every
    node would bury its jobs on arrival. A module that cannot be imported here is
    `warn`ed about (the thing is `done` without checking the class): the app's code
    may live on the nodes only, and they check it against their allowlist.
    """
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise ConfigError(f"job class {path!r} must look like module.path:ClassName")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # whatever the module raises while importing
        warn(
            f"cannot import {module_name} here ({type(e).__name__}: {e}); {done} without checking"
            f" {class_name}: the nodes check it against their --jobs"
        )
        return None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"module {module_name} has no {class_name}; nothing {done}")
    if not (isinstance(cls, type) and issubclass(cls, Job)):
        raise ConfigError(f"{path} is not a roger_cluster Job subclass")
    return cls


async def cmd_job_enqueue(client: Client, args: argparse.Namespace, out: Output) -> None:
    partition = check_partition(args.partition)
    message = job_message(args.job, json_args(args.args), args.queue, out.warn)
    if not args.force:
        await _check_target(client, partition, message.queue, out)
    delay = parse_duration(args.delay) if args.delay is not None else None
    at = parse_at(args.at) if args.at is not None else None
    await client.enqueue_message(message, partition, delay=delay, at=at)
    data: dict[str, Any] = {"id": message.id, "partition": args.partition, "queue": message.queue}
    if delay is not None or at is not None:
        data["due"] = at.timestamp() if at is not None else time.time() + (delay or 0.0)
    out.message(message.id, data)


def parse_at(text: str) -> datetime.datetime:
    """`--at`: an ISO 8601 time with its UTC offset (or Z); ConfigError if not."""
    try:
        at = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"time {text!r} is not understood: write ISO 8601 with its offset, 2026-12-24T09:00:00+01:00"
        ) from None
    if at.tzinfo is None:
        raise ConfigError(f"time {text!r} has no UTC offset: add one, as in 2026-12-24T09:00:00+01:00")
    check_at(at)
    return at


async def _check_target(client: Client, partition: str, queue: str, out: Output) -> None:
    """Refuse a job no node would take: its partition is stopped or lacks its queue."""
    try:
        spec = await client.partition_spec(partition)
    except UnknownPartition:
        raise UnknownPartition(
            f"partition {partition!r} is not started: no node would take the job;"
            " nothing enqueued (--force enqueues it anyway)"
        ) from None
    if queue not in spec.queues:
        raise UnknownQueue(
            f"partition {partition!r} has no queue {queue!r} (it has {', '.join(spec.queues)});"
            " nothing enqueued (--force enqueues it anyway)"
        )
    if spec.draining:
        out.warn(f"partition {partition} is draining: no node takes its jobs until it is started again")


async def cmd_job_cancel(client: Client, args: argparse.Namespace, out: Output) -> None:
    await client.cancel(check_partition(args.partition), args.job_id)
    out.message(f"cancellation of job {args.job_id} requested", {"id": args.job_id, "cancelled": True})


async def cmd_job_scheduled(client: Client, args: argparse.Namespace, out: Output) -> None:
    found = await client.scheduled(check_partition(args.partition), args.limit)
    if out.json_mode:
        out.message("", asdict(found))
        return
    bands = ", ".join(f"{count} {band}" for band, count in found.bands.items() if count)
    print(f"{found.total} job(s) waiting for {found.partition}" + (f": {bands}" if bands else ""))
    for level, count in found.unread.items():
        out.warn(f"delay level {level} holds {count} messages (of any partition): counted, not read")
    if found.due_now:
        print(f"{found.due_now} job(s) of the namespace are due and being moved to their queues")
    if found.jobs:
        out.table(
            ["DUE", "IN", "ID", "CLASS", "QUEUE", "RETRIES"],
            [
                [
                    out.time(j.due) if j.due else None,
                    _remaining(j.due),
                    j.id,
                    j.job if j.error is None else f"(unreadable: {j.error})",
                    j.queue,
                    j.retry_count,
                ]
                for j in found.jobs
            ],
            None,
        )
    if found.total > len(found.jobs):
        print(f"(the first {len(found.jobs)} shown; --limit shows more)")


def _remaining(due: float | None) -> str | None:
    """How long until `due`, roughly: 45s, 12m, 3h, 2d."""
    if due is None:
        return None
    left = max(0.0, due - time.time())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if left >= size:
            return f"{left / size:.0f}{unit}"
    return f"{left:.0f}s"


async def cmd_job_buried(client: Client, args: argparse.Namespace, out: Output) -> None:
    jobs = await client.buried(check_partition(args.partition), check_queue(args.queue), args.limit)
    out.table(
        ["ID", "CLASS", "FAILED", "NODE", "REASON"],
        [
            [j.id, j.job, out.time(j.failed_at) if j.failed_at else None, j.node, _one_line(j.reason)]
            for j in jobs
        ],
        [vars(j) for j in jobs],
    )


async def cmd_job_retry_buried(client: Client, args: argparse.Namespace, out: Output) -> None:
    ids = args.job_ids or None
    partition, queue = check_partition(args.partition), check_queue(args.queue)
    held: list[dict[str, str]] = []

    def key_held(job_id: str, key: str) -> None:
        held.append({"id": job_id, "key": key})

    with Progress(f"looking through {buried_queue_name(partition, queue)}") as progress:
        moved = await client.retry_buried(partition, queue, ids, on_progress=progress, on_key_held=key_held)
    for h in held:  # after the progress line is gone
        why = f"another queued job holds its queue key {h['key']!r}"
        print(f"job {h['id']} stays buried: {why}", file=sys.stderr)
    out.message(f"{moved} buried job(s) back on the queue", {"moved": moved, "kept_buried": held})


async def cmd_job_purge_buried(client: Client, args: argparse.Namespace, out: Output) -> None:
    partition, queue = check_partition(args.partition), check_queue(args.queue)
    with Progress("") as progress:
        progress.show(f"purging {buried_queue_name(partition, queue)}...")  # one AMQP purge: no steps
        purged = await client.purge_buried(partition, queue)
    out.message(f"{purged} buried job(s) deleted", {"purged": purged})


def _one_line(text: str, width: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
