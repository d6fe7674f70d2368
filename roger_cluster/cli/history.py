"""`rogerctl job show ID` and `rogerctl job history PARTITION`: the job history.

Both read the namespace's history stream (`history.py`) from `--since` ago
on, without consuming it; `job show` also asks the live nodes whether one
runs the job now, as `job running` does. `job show` exits 4 when the job
has no event in the time read and no node runs it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

from ..client import Client
from ..delays import parse_span
from ..history import STATES, JobEvent
from ..names import check_partition, check_queue
from .common import Exit
from .output import Output

DEFAULT_SHOW_SINCE = "24h"
DEFAULT_HISTORY_SINCE = "1h"


def add_history_commands(jobs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`job show` and `job history` under rogerctl's `job` command."""
    show = jobs.add_parser(
        "show",
        help="where a job is now and every step it took (from the job history)",
        description="Where a job is now (running on a node, waiting to retry, succeeded, buried...)"
        " and every step it took, read from the namespace's history stream (docs/history.md)."
        " Exit 4 if it has no event since --since and no node runs it.",
    )
    show.add_argument("job_id", metavar="JOB_ID", help="the id enqueue printed")
    show.add_argument(
        "--since",
        default=DEFAULT_SHOW_SINCE,
        metavar="DURATION",
        help="read the history this far back: 90m, 24h, 7d (default %(default)s)",
    )
    show.add_argument("--tracebacks", action="store_true", help="print the traceback of each failed attempt")
    show.set_defaults(run=cmd_job_show)
    history = jobs.add_parser(
        "history",
        help="the latest job events of a partition, newest first, filtered",
        description="The latest job events of a partition (started, succeeded, retried, buried,"
        " cancelled, requeued, refused), newest first, from the namespace's history stream.",
    )
    history.add_argument("partition", metavar="PARTITION", help="partition name")
    history.add_argument("--queue", help="only this queue of the partition")
    history.add_argument(
        "--state", choices=STATES, help="only events of this kind; failed: retried or buried"
    )
    history.add_argument(
        "--class", dest="job_class", metavar="CLASS", help="only this job class (module:Class or Class)"
    )
    history.add_argument(
        "--since",
        default=DEFAULT_HISTORY_SINCE,
        metavar="DURATION",
        help="read the history this far back: 15m, 1h, 7d (default %(default)s)",
    )
    history.add_argument("--limit", type=int, default=100, help="at most this many (default %(default)s)")
    history.set_defaults(run=cmd_job_history)


def _since(text: str) -> float:
    return time.time() - parse_span(text)


def _detail(e: JobEvent) -> str:
    parts = []
    if e.error_type is not None:
        parts.append(f"{e.error_type}: {' '.join((e.error_message or '').split())}"[:100])
    if e.kind == "retried" and e.delay is not None:
        parts.append(f"retry in {e.delay}s")
    if e.kind == "started" and e.enqueued_at:
        parts.append(f"waited {max(0.0, e.at - e.enqueued_at):.2f}s since enqueued")
    return "; ".join(parts)


def _duration(e: JobEvent) -> str | None:
    return None if e.duration is None else f"{e.duration:.3f}s"


async def cmd_job_show(client: Client, args: argparse.Namespace, out: Output) -> int:
    story = await client.job_story(args.job_id, _since(args.since))
    if out.json_mode:
        out.message("", {**asdict(story), "events": [asdict(e) for e in story.events]})
    else:
        first = story.events[0] if story.events else None
        where = f" ({first.job_class} in {first.partition}-{first.queue})" if first else ""
        print(f"job {story.job_id}{where}: {story.state}")
        if story.events:
            out.table(
                ["TIME", "EVENT", "NODE", "ATTEMPT", "DURATION", "DETAIL"],
                [[out.time(e.at), e.kind, e.node, e.attempt, _duration(e), _detail(e)] for e in story.events],
                None,
            )
        if args.tracebacks:
            for e in story.events:
                if e.traceback:
                    print(f"\nattempt {e.attempt} on {e.node}, {e.kind}:\n{e.traceback.rstrip()}")
    return Exit.NOT_FOUND if not story.events and story.running_on is None else Exit.OK


async def cmd_job_history(client: Client, args: argparse.Namespace, out: Output) -> None:
    partition = check_partition(args.partition)
    queue = check_queue(args.queue) if args.queue is not None else None
    found = await client.job_history(
        partition,
        queue=queue,
        state=args.state,
        job_class=args.job_class,
        since=_since(args.since),
        limit=args.limit,
    )
    out.table(
        ["TIME", "ID", "CLASS", "QUEUE", "EVENT", "NODE", "ATTEMPT", "DURATION", "DETAIL"],
        [
            [
                out.time(e.at),
                e.job_id,
                e.job_class,
                e.queue,
                e.kind,
                e.node,
                e.attempt,
                _duration(e),
                _detail(e),
            ]
            for e in found
        ],
        [asdict(e) for e in found],
    )
