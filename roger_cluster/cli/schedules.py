"""`rogerctl schedule add|list|show|pause|resume|remove|run-now`: recurring schedules.

A schedule is a value in etcd; every node follows it and fires each tick once
for the whole cluster. `add` refuses what cannot run, like `job enqueue`: a
class missing from a module rogerctl can import (exit 2). A module it cannot
import is only a warning (the app's code may live on the nodes alone: a node
that cannot run the class buries each firing with the reason). Unknown
schedules exit 4.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..client import Client
from ..errors import ConfigError, UnknownPartition
from ..schedule_admin import ScheduleInfo
from ..schedules import CATCH_UP, Schedule, parse_every
from .jobs import job_class, json_args
from .output import Output


def add_schedule_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`schedule ...` under rogerctl's top-level commands."""
    schedule = commands.add_parser("schedule", help="recurring jobs: add, list, pause, resume, remove")
    scmds = schedule.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = scmds.add_parser(
        "add",
        help="create or replace a schedule; each tick fires one job, once for the whole cluster",
    )
    add.add_argument("name", metavar="NAME", help="schedule name (letters, digits, _)")
    add.add_argument("partition", metavar="PARTITION", help="partition its jobs go to")
    add.add_argument("job", metavar="MODULE:CLASS", help="the job class, e.g. myapp.jobs:Report")
    add.add_argument(
        "args", metavar="ARGS_JSON", help="the job's arguments as JSON; @FILE reads them from a file"
    )
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--cron",
        metavar="EXPR",
        help='cron expression: 5 fields ("*/5 * * * *"), 6 with seconds first, or @hourly, @daily...',
    )
    when.add_argument("--every", metavar="INTERVAL", help="a fixed interval: 10s, 5m, 2h, 1d")
    add.add_argument("--tz", default="UTC", help="time zone of --cron (default %(default)s)")
    add.add_argument("--queue", help="queue of the partition (default: the job class's)")
    add.add_argument(
        "--catch-up",
        choices=CATCH_UP,
        default="latest",
        help="ticks missed while the whole cluster was down: fire none, the latest, or all"
        " (at most 100) (default %(default)s)",
    )
    add.add_argument("--paused", action="store_true", help="add it paused")
    add.set_defaults(run=cmd_schedule_add)
    scmds.add_parser("list", help="every schedule: next fire time, last fired, by which node").set_defaults(
        run=cmd_schedule_list
    )
    show = scmds.add_parser("show", help="one schedule in full")
    show.add_argument("name", metavar="NAME", help="schedule name")
    show.set_defaults(run=cmd_schedule_show)
    for action, run, text in (
        ("pause", cmd_schedule_pause, "stop firing it (ticks meanwhile are skipped)"),
        ("resume", cmd_schedule_resume, "fire it again from its next tick"),
        ("remove", cmd_schedule_remove, "delete it (queued jobs of its ticks are dropped unrun)"),
        ("run-now", cmd_schedule_run_now, "enqueue its job once now, beside its ticks; prints the id"),
    ):
        command = scmds.add_parser(action, help=text)
        command.add_argument("name", metavar="NAME", help="schedule name")
        command.set_defaults(run=run)


async def cmd_schedule_add(client: Client, args: argparse.Namespace, out: Output) -> None:
    if args.tz != "UTC" and args.cron is None:
        raise ConfigError("--tz applies to --cron only")
    every = parse_every(args.every) if args.every is not None else None
    schedule = Schedule(
        args.name,
        args.partition,
        args.job,
        json_args(args.args),
        cron=args.cron,
        every=every,
        tz=args.tz,
        queue=args.queue,
        catch_up=args.catch_up,
        paused=args.paused,
    )
    job_class(args.job, out.warn, "added")
    try:
        await client.partition_spec(schedule.partition)
    except UnknownPartition:
        out.warn(
            f"partition {schedule.partition} is not started: its ticks are skipped (misfires) until it is"
        )
    stored = await client.put_schedule(schedule)
    info = await client.get_schedule(stored.name)
    nxt = f", next at {out.time(info.next_fire)}" if info.next_fire else " (paused)"
    out.message(f"schedule {stored.name} stored: {stored.describe()}{nxt}", _data(info))


async def cmd_schedule_list(client: Client, args: argparse.Namespace, out: Output) -> None:
    infos = await client.schedules()
    out.table(
        ["NAME", "PARTITION", "JOB", "WHEN", "PAUSED", "NEXT", "LAST", "BY", "FIRED", "MISFIRED"],
        [
            [
                i.name,
                i.schedule.partition,
                i.schedule.job,
                i.schedule.describe(),
                "yes" if i.paused else "no",
                out.time(i.next_fire) if i.next_fire else None,
                out.time(i.last_fired) if i.last_fired else None,
                i.last_by or None,
                i.fired,
                i.misfired,
            ]
            for i in infos
        ],
        [_data(i) for i in infos],
    )


async def cmd_schedule_show(client: Client, args: argparse.Namespace, out: Output) -> None:
    info = await client.get_schedule(args.name)
    data = _data(info)
    if out.json_mode:
        out.message("", data)
        return
    for key, value in data.items():
        shown = out.time(value) if key in ("next_fire", "last_fired", "created_at") and value else value
        print(f"{key + ':':<12} {'-' if shown is None else shown}")


async def cmd_schedule_pause(client: Client, args: argparse.Namespace, out: Output) -> None:
    await client.pause_schedule(args.name)
    out.message(f"schedule {args.name} paused", {"name": args.name, "paused": True})


async def cmd_schedule_resume(client: Client, args: argparse.Namespace, out: Output) -> None:
    await client.resume_schedule(args.name)
    out.message(f"schedule {args.name} resumed", {"name": args.name, "paused": False})


async def cmd_schedule_remove(client: Client, args: argparse.Namespace, out: Output) -> None:
    await client.remove_schedule(args.name)
    out.message(f"schedule {args.name} removed", {"name": args.name, "removed": True})


async def cmd_schedule_run_now(client: Client, args: argparse.Namespace, out: Output) -> None:
    schedule = (await client.get_schedule(args.name)).schedule
    job_class(schedule.job, out.warn, "enqueued")  # imported here, the job takes its class's keys
    job_id = await client.run_schedule_now(args.name)
    out.message(job_id, {"id": job_id, "schedule": args.name, "partition": schedule.partition})


def _data(info: ScheduleInfo) -> dict[str, Any]:
    s = info.schedule
    return {
        "name": s.name,
        "partition": s.partition,
        "job": s.job,
        "args": s.args,
        "cron": s.cron,
        "tz": s.tz,
        "every": s.every,
        "queue": s.queue,
        "catch_up": s.catch_up,
        "paused": s.paused,
        "created_at": s.created_at,
        "next_fire": info.next_fire,
        "last_fired": info.last_fired,
        "last_by": info.last_by or None,
        "fired": info.fired,
        "misfired": info.misfired,
    }
