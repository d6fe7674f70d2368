"""rogerctl against a real cluster: progress of long operations shows on a
terminal's stderr and nowhere else; colours show on a terminal and never in
JSON, with NO_COLOR, or through a pipe."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from roger_cluster import Client
from roger_cluster.codec import JobMessage
from roger_cluster.demo import Noop
from roger_cluster.names import buried_queue_name, queue_name
from roger_cluster.testing import NodeFactory
from roger_cluster.testing.rogerctl import rogerctl
from roger_cluster.testing.wait import eventually

JOBS = 300


def rogerctl_on_terminal(
    factory: NodeFactory, *args: str, terminal: str = "stderr", **env: str
) -> tuple[int, str, str]:
    """Run rogerctl with `terminal` ("stderr" or "stdout") on a pseudo-terminal and
    the other stream on a pipe; returns (exit code, stdout, stderr)."""
    controller, child = pty.openpty()
    pipe = subprocess.PIPE
    process = subprocess.Popen(
        [sys.executable, "-m", "roger_cluster.cli.ctl", *args],
        env=factory.env("rogerctl", TERM="xterm", **env),
        stdin=subprocess.DEVNULL,
        stdout=child if terminal == "stdout" else pipe,
        stderr=child if terminal == "stderr" else pipe,
    )
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    stdout, stderr = process.communicate(timeout=60)
    piped = stdout if terminal == "stderr" else stderr
    code = process.wait()
    on_terminal = seen.decode().replace("\r\n", "\n")
    other = piped.decode()
    return (code, on_terminal, other) if terminal == "stdout" else (code, other, on_terminal)


async def fill(client: Client, partition: str, count: int) -> None:
    await client.start_partition(partition, {"default": 1})
    await client.enqueue_many([Noop.create(None) for _ in range(count)], partition)


async def bury(client: Client, partition: str, count: int) -> None:
    broker = await client.broker()
    target = buried_queue_name(partition, "default")
    for _ in range(count):
        await broker.publish(JobMessage.from_job(Noop.create(None)), partition, target)


async def test_purge_shows_progress_on_a_terminal_and_keeps_json_clean(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    await fill(roger_client, p, JOBS)
    code, out, err = rogerctl_on_terminal(node_factory, "--json", "queue", "purge", p, "default", "--yes")
    assert code == 0, err
    assert json.loads(out) == {"partition": p, "queue": "default", "purged": JOBS}
    assert f"\rpurging {p}-default: {JOBS} of {JOBS} (100%)" in err
    assert err.endswith("\r")  # the line is wiped at the end


async def test_without_a_terminal_there_is_no_progress_and_no_colour(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    await fill(roger_client, p, JOBS)
    done = rogerctl(node_factory, "queue", "purge", p, "default", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{JOBS} job(s) purged from {p}-default\n"
    assert done.stderr == ""


async def test_retry_and_purge_buried_show_progress_on_a_terminal(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    await fill(roger_client, p, 0)
    await bury(roger_client, p, 50)
    code, out, err = rogerctl_on_terminal(node_factory, "--json", "job", "retry-buried", p, "default")
    assert code == 0, err
    assert json.loads(out) == {"moved": 50, "kept_buried": []}
    assert f"\rlooking through {p}-default.buried: 50 of 50 (100%)" in err

    async def back_on_the_queue() -> bool:
        stats = await (await roger_client.broker()).stats(queue_name(p, "default"))
        return stats is not None and stats.ready == 50

    await eventually(back_on_the_queue, timeout=10)
    await bury(roger_client, p, 20)
    code, out, err = rogerctl_on_terminal(node_factory, "job", "purge-buried", p, "default")
    assert code == 0, err
    assert out == "20 buried job(s) deleted\n"
    assert f"\rpurging {p}-default.buried..." in err


async def test_tables_are_coloured_on_a_terminal_only(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    await fill(roger_client, p, 0)
    await roger_client.pause_queue(p, "default")
    show = ("partition", "show", p)

    code, out, _ = rogerctl_on_terminal(node_factory, *show, terminal="stdout")
    assert code == 0
    assert "\x1b[1mQUEUE\x1b[0m" in out and "\x1b[33myes\x1b[0m" in out  # bold header, paused in yellow

    _, out, _ = rogerctl_on_terminal(node_factory, *show, terminal="stdout", NO_COLOR="1")
    assert "\x1b" not in out and "yes" in out
    _, out, _ = rogerctl_on_terminal(node_factory, "--color", "never", *show, terminal="stdout")
    assert "\x1b" not in out
    _, out, _ = rogerctl_on_terminal(node_factory, "--json", *show, terminal="stdout")
    assert "\x1b" not in out and json.loads(out)[0]["paused"] is True

    piped = rogerctl(node_factory, *show)
    assert piped.returncode == 0 and "\x1b" not in piped.stdout
    forced = rogerctl(node_factory, "--color", "always", *show)
    assert "\x1b[33myes\x1b[0m" in forced.stdout


def test_errors_are_red_on_a_terminal_only(node_factory: NodeFactory) -> None:
    args = ("--etcd", "127.0.0.1:1", "nodes")
    code, _, err = rogerctl_on_terminal(node_factory, *args)
    assert code == 1
    assert err.startswith("\x1b[31mrogerctl: cannot reach etcd at 127.0.0.1:1")
    code, _, err = rogerctl_on_terminal(node_factory, *args, NO_COLOR="1")
    assert code == 1 and err.startswith("rogerctl: cannot reach etcd")
