"""`rogerctl dashboard`: serve the web dashboard until SIGINT or SIGTERM (then exit 0).

The server itself is `roger_cluster.dashboard`; this only parses the flags,
prints where the page is, and owns the signal handling (constructors below
`cli/` install none).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from ..client import Client
from ..dashboard import DashboardServer
from ..errors import ConfigError
from .output import Output


async def cmd_dashboard(client: Client, args: argparse.Namespace, out: Output) -> None:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    server = DashboardServer(client, args.host, args.port)
    try:
        await server.start()
    except OSError as e:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        out.message(
            f"dashboard on {server.url} (no authentication: keep it on localhost or behind a proxy"
            " that checks who comes in); Ctrl-C stops it",
            {"url": server.url, "host": server.host, "port": server.port},
        )
        sys.stdout.flush()  # a supervisor or a test reads the URL from a pipe
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await server.stop()


def add_dashboard_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`dashboard [--host H] [--port P]` under rogerctl's top-level commands."""
    dashboard = commands.add_parser(
        "dashboard",
        help="serve a web page with nodes, partitions, queues and running jobs, and buttons to act on them",
        description="Serve the dashboard: live nodes, partitions, queue depths and rates, running jobs;"
        " pause/resume, cancel, retry buried, start/stop partition (each asks first). It has NO"
        " authentication: it binds to 127.0.0.1 unless told otherwise; to share it, put it behind a"
        " reverse proxy that authenticates. Stops on SIGINT/SIGTERM with exit 0.",
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    dashboard.add_argument(
        "--port", type=int, default=8080, help="port to listen on, 0 for any free one (default %(default)s)"
    )
    dashboard.set_defaults(run=cmd_dashboard)
