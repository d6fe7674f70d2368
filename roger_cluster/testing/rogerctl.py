"""`rogerctl` run against a test's cluster, as an operator would run it.

Why it exists: CLI behaviour (exit codes, output, prompts) is only tested
for real by running the command in a process of its own, configured through
the same environment variables as the factory's nodes (`NodeFactory.env`).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from .nodes import NodeFactory

__all__ = ["rogerctl", "start_rogerctl"]


def rogerctl(
    factory: NodeFactory, *args: str, input: str | None = None, stdin: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run rogerctl `args` to the end (60 s at most); `input` is written to its stdin.

    `stdin=subprocess.DEVNULL` runs it with no terminal, as in a script; by
    default it inherits the test run's.
    """
    return subprocess.run(
        [sys.executable, "-m", "roger_cluster.cli.ctl", *args],
        env=factory.env("rogerctl"),
        input=input,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def start_rogerctl(factory: NodeFactory, *args: str) -> asyncio.subprocess.Process:
    """rogerctl running in the background (stdout and stderr piped), for commands that wait."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "roger_cluster.cli.ctl",
        *args,
        env=factory.env("rogerctl"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
