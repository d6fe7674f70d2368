"""`rogerctl dashboard`: serve the web dashboard until SIGINT or SIGTERM (then exit 0).

The server itself is `roger_cluster.dashboard`; this only parses the flags,
reads the token file, prints where the page is, and owns the signal handling
(constructors below `cli/` install none). A non-loopback `--host` without
`--token-file` is refused (exit 2) before anything listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from ..client import Client
from ..dashboard import DashboardServer
from ..dashboard.access import read_token
from ..errors import ConfigError
from .output import Output


async def cmd_dashboard(client: Client, args: argparse.Namespace, out: Output) -> None:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    token = read_token(args.token_file) if args.token_file else None
    server = DashboardServer(client, args.host, args.port, token=token)  # refuses a bad bind
    try:
        await server.start()
    except OSError as e:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        access = (
            "token required: sign in on /login, or send Authorization: Bearer"
            if token
            else "no authentication: loopback only"
        )
        out.message(
            f"dashboard on {server.url} ({access}); Ctrl-C stops it",
            {"url": server.url, "host": server.host, "port": server.port, "token": token is not None},
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
        " pause/resume, cancel, retry buried, start/stop partition (each asks first). It binds to"
        " 127.0.0.1 without authentication; any other --host needs --token-file (a browser signs in"
        " once on /login, a script sends Authorization: Bearer TOKEN), else it refuses to start"
        " (exit 2). Stops on SIGINT/SIGTERM with exit 0.",
    )
    dashboard.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default %(default)s); any non-loopback one needs --token-file",
    )
    dashboard.add_argument(
        "--port", type=int, default=8080, help="port to listen on, 0 for any free one (default %(default)s)"
    )
    dashboard.add_argument(
        "--token-file",
        metavar="PATH",
        help="require the token in this file (at least 16 characters) from every browser and script;"
        " required to listen on a non-loopback --host",
    )
    dashboard.set_defaults(run=cmd_dashboard)
