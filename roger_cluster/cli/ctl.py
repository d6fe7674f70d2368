"""rogerctl: operate a roger_cluster from the shell.

Exit codes are one table, `common.Exit` (docs/cli.md): 0 ok; 1 a server cannot
be reached or refused the request, or a wait ran out; 2 bad usage or bad input
(nothing was changed); 3 conflict (a duplicate job); 4 not found (partition,
queue, schedule); 5 an entry in etcd does not decode; 130 interrupted. Every error is one
line on stderr, `rogerctl: ...`.

The commands live beside their subject: `nodes`, `partition` and `doctor`
here, `queue` in `queues.py`, `job` in `jobs.py` and `info.py`, `schedule`
in `schedules.py`, `dashboard` in `dashboard.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import cast

from ..client import Client
from ..cluster.cancellations import DEFAULT_TTL as DEFAULT_CANCEL_TTL
from ..cluster.drain import DEFAULT_DRAIN_TIMEOUT, DrainProgress
from ..cluster.partitions import PartitionSpec
from ..errors import ConfigError, RogerError
from ..names import check_concurrency, check_partition, check_queue
from . import color, completion, tree
from .common import (
    Exit,
    Parser,
    add_connection_flags,
    amqp_config,
    env,
    etcd_config,
    exit_code,
    explain,
    fail,
    parse,
    setup_logging,
    split_list,
)
from .dashboard import add_dashboard_command
from .info import PARTITION_SHOW_HEADERS, queue_row
from .jobs import add_job_commands
from .output import Output
from .progress import Progress
from .queues import add_queue_commands
from .schedules import add_schedule_commands

Command = Callable[[Client, argparse.Namespace, Output], Awaitable[int | None]]


def parse_queues(items: list[str]) -> dict[str, int]:
    """`default=10 other=5` -> {"default": 10, "other": 5}; ConfigError if malformed."""
    queues: dict[str, int] = {}
    for item in items:
        queue, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{item!r} must look like QUEUE=CONCURRENCY, e.g. default=10")
        check_queue(queue)
        if queue in queues:
            raise ConfigError(f"queue {queue!r} is given twice")
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(
                f"concurrency of queue {queue!r} must be a whole number, got {value!r}"
            ) from None
        queues[queue] = check_concurrency(queue, number)
    return queues


async def cmd_nodes(client: Client, args: argparse.Namespace, out: Output) -> None:
    nodes = await client.nodes()
    out.table(
        ["NAME", "HOST", "PID", "VERSION", "STARTED", "LABELS"],
        [
            [n.name, n.host, n.pid, n.version, out.time(n.started_at), ",".join(n.labels) or None]
            for n in nodes
        ],
        [{**vars(n), "labels": list(n.labels)} for n in nodes],
    )


def _placement(spec: PartitionSpec) -> str:
    parts = [f"nodes={','.join(spec.nodes)}"] if spec.nodes else []
    parts += [f"labels={','.join(spec.labels)}"] if spec.labels else []
    where = " ".join(parts) or "every node"
    return where if spec.replicas is None else f"{where}, replicas={spec.replicas}"


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


async def cmd_partition_start(client: Client, args: argparse.Namespace, out: Output) -> None:
    write = client.ensure_partition if args.if_absent else client.set_partition
    wanted = PartitionSpec(
        check_partition(args.name),
        parse_queues(args.queues),
        tuple(split_list(args.nodes)),
        tuple(split_list(args.labels)),
        replicas=args.replicas,
    )
    spec = await write(
        wanted.name, wanted.queues, nodes=wanted.nodes, labels=wanted.labels, replicas=wanted.replicas
    )
    kept = args.if_absent and spec != wanted
    out.message(
        f"partition {spec.name} {'exists, left as it is' if kept else 'started'}: "
        + ", ".join(f"{q}={n}" for q, n in spec.queues.items())
        + f" on {_placement(spec)}",
        {
            "name": spec.name,
            "queues": dict(spec.queues),
            "nodes": list(spec.nodes),
            "labels": list(spec.labels),
            "replicas": spec.replicas,
            "draining": spec.draining,
        },
    )


def _drain_line(progress: DrainProgress) -> str:
    done, total = len(progress.drained), len(progress.drained) + len(progress.pending)
    waiting = f"; waiting for {', '.join(progress.pending)}" if progress.pending else ""
    return f"draining {progress.partition}: {done} of {total} node(s) done{waiting}"


async def cmd_partition_stop(client: Client, args: argparse.Namespace, out: Output) -> None:
    name = check_partition(args.name)
    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {args.timeout:g}")
    with Progress("") as line:
        invalid = await client.stop_partition(
            name, drain=args.drain, timeout=args.timeout, on_progress=lambda p: line.report(_drain_line(p))
        )
    if invalid is not None:
        out.warn(f"{invalid}; removed it anyway{' (without a drain)' if args.drain else ''}")
    how = "drained and stopped" if args.drain and invalid is None else "stopped"
    out.message(f"partition {name} {how}", {"name": name, "stopped": True, "drained": args.drain})


async def cmd_partition_list(client: Client, args: argparse.Namespace, out: Output) -> None:
    specs = await client.partitions()
    paused = await client.paused_queues()

    def queues(s: PartitionSpec) -> str:
        marks = {q: "(paused)" if (s.name, q) in paused else "" for q in s.queues}
        return " ".join(f"{q}={n}{marks[q]}" for q, n in s.queues.items())

    out.table(
        ["PARTITION", "STATE", "QUEUES", "PLACEMENT"],
        [[s.name, "draining" if s.draining else "active", queues(s), _placement(s)] for s in specs],
        [
            {
                "name": s.name,
                "queues": dict(s.queues),
                "draining": s.draining,
                "nodes": list(s.nodes),
                "labels": list(s.labels),
                "replicas": s.replicas,
                "paused": [q for q in s.queues if (s.name, q) in paused],
            }
            for s in specs
        ],
    )


async def cmd_partition_show(client: Client, args: argparse.Namespace, out: Output) -> None:
    info = await client.partition(check_partition(args.name))
    out.table(PARTITION_SHOW_HEADERS, [queue_row(q) for q in info.queues], [asdict(q) for q in info.queues])
    if info.placement is not None and not out.json_mode:  # after the table: its header stays line 1
        print(f"placement: {info.placement}")


async def cmd_doctor(client: Client, args: argparse.Namespace, out: Output) -> int:
    findings = await client.doctor()
    if findings or out.json_mode:
        out.table(
            ["KIND", "KEY", "PROBLEM", "WAY OUT"],
            [["ignored" if f.ignored else "note", f.key, f.problem, f.fix] for f in findings],
            [asdict(f) for f in findings],
        )
    else:
        out.message("nothing ignored: every partition and pause in etcd is usable", [])
    return Exit.INVALID_STATE if any(f.ignored for f in findings) else Exit.OK


def parser() -> argparse.ArgumentParser:
    """The rogerctl argument parser."""
    p = Parser(
        prog="rogerctl",
        description="Operate a roger_cluster: nodes, partitions, jobs.",
        epilog="Exit codes: 0 ok, 1 server unreachable or refusing (or a wait ran out), 2 bad usage"
        " or input, 3 conflict, 4 not found, 5 an entry in etcd nodes ignore (see doctor), 130"
        " interrupted.",
    )
    add_connection_flags(p)
    p.add_argument(
        "--management-url",
        default=env("ROGER_MANAGEMENT_URL", ""),
        help="RabbitMQ management API, for unacked counts (env ROGER_MANAGEMENT_URL;"
        " default: port 15672 on the AMQP host, same credentials)",
    )
    p.add_argument(
        "--cancel-ttl",
        type=int,
        default=env("ROGER_CANCEL_TTL", str(DEFAULT_CANCEL_TTL)),
        help="seconds a cancellation request is kept (env ROGER_CANCEL_TTL; default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument(
        "--color",
        choices=color.CHOICES,
        default="auto",
        help="colour tables and errors: auto (on a terminal, unless NO_COLOR is set), always, never"
        " (default %(default)s)",
    )
    # Subcommands are made with the parent's class, Parser; the helpers of the
    # other modules take argparse's type, which a _SubParsersAction[Parser] is not to mypy.
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        p.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )

    nodes = commands.add_parser("nodes", help="list the live nodes")
    nodes.set_defaults(run=cmd_nodes)

    partition = commands.add_parser("partition", help="start, stop, list, show partitions")
    pcmds = partition.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = pcmds.add_parser("start", help="create or reconfigure: NAME QUEUE=N [QUEUE=N ...]")
    start.add_argument("name", metavar="NAME", help="partition name: letters, digits and _")
    start.add_argument(
        "queues", nargs="+", metavar="QUEUE=N", help="a queue and its concurrency (jobs at once per node)"
    )
    start.add_argument(
        "--nodes",
        action="append",
        metavar="NODE[,NODE...]",
        help="only these nodes consume the partition (repeatable; default: every node)",
    )
    start.add_argument(
        "--labels",
        action="append",
        metavar="LABEL[,LABEL...]",
        help="only nodes started with every one of these --label values consume it (repeatable)",
    )
    start.add_argument(
        "--replicas",
        type=_whole_number,
        metavar="K",
        help="run it on K of the eligible live nodes, picked by rendezvous hashing of partition and"
        " node names; another takes over when one dies (default: every eligible node)",
    )
    start.add_argument(
        "--if-absent",
        action="store_true",
        help="only create it: a partition that exists is left as it is (concurrency, placement, a drain)"
        " and printed; for deploy scripts",
    )
    start.set_defaults(run=cmd_partition_start)
    stop = pcmds.add_parser("stop", help="stop consuming a partition (its queues keep their jobs)")
    stop.add_argument("name", metavar="NAME", help="partition name")
    stop.add_argument(
        "--drain",
        action="store_true",
        help="stop taking its jobs, wait until every node has finished the running ones, then remove it",
    )
    stop.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_DRAIN_TIMEOUT,
        help="with --drain: seconds to wait (default %(default)g); the partition stays draining"
        " after a timeout (exit 1), run the command again to keep waiting",
    )
    stop.set_defaults(run=cmd_partition_stop)
    pcmds.add_parser("list", help="list partitions: state, queues, paused queues, placement").set_defaults(
        run=cmd_partition_list
    )
    show = pcmds.add_parser(
        "show", help="per queue: concurrency, paused, ready, unacked, buried, consumers and their nodes"
    )
    show.add_argument("name", metavar="NAME", help="partition name")
    show.set_defaults(run=cmd_partition_show)

    add_queue_commands(commands)
    add_job_commands(commands)
    add_schedule_commands(commands)

    doctor = commands.add_parser(
        "doctor",
        help="list entries in etcd that nodes ignore (exit 5 if any), and notes on ones with no effect",
        description="List what the nodes skip without a word: partition entries whose value does not"
        " decode (nodes ignore them; `partition stop NAME` removes one), schedule entries that do not"
        " decode (they never fire; `schedule remove NAME` removes one) and paused keys that name no"
        " queue. Notes, which do not change the exit code: pauses of queues not in the partition map,"
        " and partitions whose --nodes/--labels match no live node. Exit 5 if anything is ignored.",
    )
    doctor.set_defaults(run=cmd_doctor)

    add_dashboard_command(commands)
    complete = commands.add_parser(
        "completion",
        help="print a shell completion script for rogerctl and roger-node",
        description="Print a completion script for rogerctl and roger-node: put"
        " `source <(rogerctl completion bash)` in ~/.bashrc, or"
        " `source <(rogerctl completion zsh)` in ~/.zshrc (zsh runs it through bashcompinit).",
    )
    complete.add_argument("shell", choices=completion.SHELLS, help="the shell to complete in")
    complete.set_defaults(run=None)
    tree.describe_subcommands(p)
    tree.accept_after_subcommands(p)
    return p


def print_completion(shell: str) -> None:
    """`rogerctl completion SHELL`: needs no cluster, so it runs before any config is built."""
    from . import node  # roger-node's parser; imported here, only this command needs it

    print(completion.script(shell, {"rogerctl": parser(), "roger-node": node.parser()}), end="")


async def run(args: argparse.Namespace) -> int:
    """Run the chosen command with a client built from the flags."""
    client = Client(
        management_url=args.management_url or None,
        cancel_ttl=args.cancel_ttl,
        amqp_config=amqp_config(args),
        etcd_config=etcd_config(args),
    )
    out = Output(
        json_mode=args.json,
        color=color.wanted(args.color, sys.stdout),
        error_color=color.wanted(args.color, sys.stderr),
    )
    command: Command = args.run
    async with client:
        return await command(client, args, out) or Exit.OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of rogerctl."""
    try:
        code = command(argv)
        sys.stdout.flush()  # a reader gone before the end shows here, not at exit
        return code
    except BrokenPipeError:
        return reader_gone()


def command(argv: list[str] | None) -> int:
    """Parse `argv` and run the command; a RogerError becomes its exit code and one line."""
    args = parse(parser(), argv)
    if args.command == "completion":
        print_completion(args.shell)
        return Exit.OK
    setup_logging("warning")
    red = color.wanted(args.color, sys.stderr)
    try:
        return asyncio.run(run(args))
    except RogerError as e:
        return fail("rogerctl", exit_code(e), explain(e, args.namespace), red)
    except KeyboardInterrupt:
        return fail("rogerctl", Exit.INTERRUPTED, "interrupted", red)


def reader_gone() -> int:
    """stdout's reader closed the pipe (`rogerctl nodes --json | head -1`): exit 1 quietly.

    Python's documented recipe: point stdout at /dev/null, so that the flush at exit
    does not raise BrokenPipeError again and print a traceback.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return Exit.FAILED


if __name__ == "__main__":
    sys.exit(main())
