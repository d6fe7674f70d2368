"""`rogerctl queue pause|resume|purge PARTITION QUEUE`: one queue, cluster-wide.

Pause and resume are writes to etcd that every node follows; purge empties
the RabbitMQ queue for good, so it asks first: on a terminal it prompts, and
without one (a script) it refuses unless `--yes` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..client import Client
from ..errors import ConfigError
from ..names import check_partition, check_queue, queue_name
from .output import Output
from .progress import Progress


async def cmd_queue_pause(client: Client, args: argparse.Namespace, out: Output) -> None:
    partition, queue = check_partition(args.partition), check_queue(args.queue)
    await client.pause_queue(partition, queue)
    out.message(
        f"queue {queue} of partition {partition} paused on every node (its jobs wait in RabbitMQ)",
        {"partition": partition, "queue": queue, "paused": True},
    )


async def cmd_queue_resume(client: Client, args: argparse.Namespace, out: Output) -> None:
    partition, queue = check_partition(args.partition), check_queue(args.queue)
    was_paused = await client.resume_queue(partition, queue)
    text = "resumed" if was_paused else "was not paused"
    out.message(
        f"queue {queue} of partition {partition} {text}",
        {"partition": partition, "queue": queue, "paused": False, "was_paused": was_paused},
    )


def _confirm(prompt: str) -> bool:
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


async def cmd_queue_purge(client: Client, args: argparse.Namespace, out: Output) -> None:
    partition, queue = check_partition(args.partition), check_queue(args.queue)
    name = queue_name(partition, queue)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"purge deletes every ready job of {name} for good: pass --yes"
                " (stdin is not a terminal, so rogerctl cannot ask)"
            )
        if not await asyncio.to_thread(_confirm, f"Delete every ready job of {name} for good? [y/N] "):
            out.message("nothing purged", {"partition": partition, "queue": queue, "purged": 0})
            return
    with Progress(f"purging {name}") as progress:
        purged = await client.purge_queue(partition, queue, on_progress=progress)
    out.message(
        f"{purged} job(s) purged from {name}",
        {"partition": partition, "queue": queue, "purged": purged},
    )


def add_queue_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`queue pause|resume|purge` under rogerctl's top-level commands."""
    queue = commands.add_parser("queue", help="pause, resume or purge one queue of a partition")
    qcmds = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    pause = qcmds.add_parser(
        "pause",
        help="stop every node taking jobs of the queue; running jobs finish, queued jobs wait",
    )
    resume = qcmds.add_parser("resume", help="let every node take jobs of a paused queue again")
    purge = qcmds.add_parser(
        "purge",
        help="delete every ready job of the queue for good (running jobs are not touched)",
    )
    purge.add_argument(
        "--yes",
        action="store_true",
        help="do not ask; required when stdin is not a terminal",
    )
    for command, run in ((pause, cmd_queue_pause), (resume, cmd_queue_resume), (purge, cmd_queue_purge)):
        command.add_argument("partition", metavar="PARTITION", help="partition name")
        command.add_argument("queue", metavar="QUEUE", help="queue of the partition")
        command.set_defaults(run=run)
