"""rogerctl as a subprocess: output into a closed pipe, and `dashboard` refusing to start unsafely."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from roger_cluster.testing import NodeFactory
from roger_cluster.testing.rogerctl import rogerctl


@pytest.mark.parametrize("args", [["nodes", "--json"], ["completion", "bash"]])
def test_output_into_a_closed_pipe_exits_1_without_a_traceback(
    node_factory: NodeFactory, args: list[str]
) -> None:
    """`rogerctl nodes --json | head -1`: the reader may be gone before rogerctl writes."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte: every write fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "roger_cluster.cli.ctl", *args],
            env=node_factory.env("rogerctl"),
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (1, "")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7"])
def test_the_dashboard_refuses_a_non_loopback_address_without_a_token(
    node_factory: NodeFactory, host: str
) -> None:
    done = rogerctl(node_factory, "dashboard", "--host", host, "--port", "0", stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert f"refusing to serve the dashboard on {host} without authentication" in done.stderr
    assert "--token-file PATH" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""


def test_the_dashboard_refuses_a_token_file_it_cannot_use(node_factory: NodeFactory, tmp_path: Path) -> None:
    short = tmp_path / "token"
    short.write_text("secret\n")
    for path, message in [(short, "needs at least 16"), (tmp_path / "missing", "cannot read")]:
        done = rogerctl(node_factory, "dashboard", "--token-file", str(path), stdin=subprocess.DEVNULL)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
