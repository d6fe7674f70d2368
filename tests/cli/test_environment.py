"""Environment variables are held to the same rules as the flags they stand for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "variable", "value", "flag"),
    [
        ("roger_cluster.cli.node", "ROGER_LOG_LEVEL", "verbose", "--log-level"),
        ("roger_cluster.cli.node", "ROGER_LOG_FORMAT", "xml", "--log-format"),
        ("roger_cluster.cli.node", "ROGER_QUEUE_TYPE", "lazy", "--queue-type"),
        ("roger_cluster.cli.ctl", "ROGER_QUEUE_TYPE", "lazy", "--queue-type"),
    ],
)
def test_a_bad_choice_from_the_environment_exits_2_naming_the_flag(
    module: str, variable: str, value: str, flag: str
) -> None:
    args = ("--etcd", "127.0.0.1:1") + (("nodes",) if module.endswith("ctl") else ())
    done = run(module, *args, **{variable: value})
    assert done.returncode == 2, done.stderr
    assert f"argument {flag}: invalid choice: {value!r}" in done.stderr
    assert "set by an environment variable" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_number_from_the_environment_exits_2_naming_the_flag() -> None:
    done = run("roger_cluster.cli.node", ROGER_LEASE_TTL="ten")
    assert done.returncode == 2
    assert "argument --lease-ttl: invalid int value: 'ten'" in done.stderr
