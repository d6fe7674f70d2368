"""scripts/demo's Docker path, driven with a stand-in `docker` on PATH (this
machine has the docker CLI but no engine): which compose commands it runs,
that --once takes the cluster down, and that it refuses flags only the local
path takes. It checks the script's control flow, not a cluster: the demo it
runs is tested against real servers in test_demo.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]
COMPOSE = "compose -f compose/docker-compose.yml"

FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$DOCKER_LOG"
case "$*" in
  *" run --rm demo") echo "15 demo jobs ran on 3 node(s)"; exit "${DEMO_STATUS:-0}" ;;
esac
exit 0
"""


Ran = tuple[subprocess.CompletedProcess[str], list[str]]


def run_demo(tmp_path: Path, *args: str, status: int = 0) -> Ran:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    log = tmp_path / "docker.log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "ROGER_DEMO_LOCAL"}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", DOCKER_LOG=str(log), DEMO_STATUS=str(status))
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo"), *args], env=env, capture_output=True, text=True, timeout=30
    )
    return done, log.read_text().splitlines()


def test_with_docker_once_runs_the_demo_service_then_takes_everything_down(tmp_path: Path) -> None:
    done, calls = run_demo(tmp_path, "--once")
    assert done.returncode == 0, done.stderr
    assert calls == [
        "info",
        "compose version",
        f"{COMPOSE} up --build --detach --wait rabbitmq etcd node1 node2 node3",
        f"{COMPOSE} run --rm demo",
        f"{COMPOSE} down",
    ]
    assert "15 demo jobs ran" in done.stdout and "RabbitMQ console: http://localhost:15672" in done.stdout


def test_with_docker_a_failed_demo_takes_everything_down_and_exits_with_its_status(tmp_path: Path) -> None:
    done, calls = run_demo(tmp_path, status=3)
    assert done.returncode == 3
    assert calls[-1] == f"{COMPOSE} down"


def test_with_docker_flags_of_the_local_path_are_refused_before_anything_starts(tmp_path: Path) -> None:
    done, calls = run_demo(tmp_path, "--nodes", "2")
    assert done.returncode == 2
    assert "ROGER_DEMO_LOCAL=1" in done.stderr
    assert not any(c.startswith(COMPOSE) for c in calls)
