"""examples/flask_app.py under gunicorn as production runs it: --preload (the SyncClient is made
and used in the master, then the master forks), 2 worker processes of 8 threads each; 2,000
requests, each enqueueing one job, run by 2 real nodes: every job runs exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from roger_cluster import Client
from roger_cluster.management import Management
from roger_cluster.testing import NodeFactory, ended, eventually, start_consuming
from roger_cluster.testing.etcd import EtcdEndpoint
from roger_cluster.testing.probes import free_ports
from roger_cluster.testing.rabbitmq import RabbitEndpoint

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 2000
CLIENT_THREADS = 16


@contextlib.contextmanager
def gunicorn(env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """gunicorn serving the Flask example; it and its workers are killed at the end, whatever happens."""
    command = [
        sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--threads", "8",
        "--worker-class", "gthread", "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5",
        "examples.flask_app:app",
    ]  # fmt: skip
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the master and its workers: one process group
        process.wait(10)


def workers(master: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except (urllib.error.URLError, ConnectionError):
        return 0


def post(url: str, i: int) -> str:
    body = json.dumps({"email": f"user{i}@example.com"}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 202
        job: str = json.loads(reply.read())["job"]
        return job


@pytest.mark.timeout(240)
async def test_a_flask_app_under_gunicorn_preload_enqueues_2000_jobs_that_run_once_each_on_2_nodes(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_management: Management,
    roger_rabbitmq: RabbitEndpoint,
    roger_etcd: EtcdEndpoint,
    roger_namespace: str,
    roger_partition: str,
    ledger: Path,
    tmp_path: Path,
) -> None:
    node_factory.extra_env["EXAMPLE_LEDGER"] = str(ledger)
    await start_consuming(
        node_factory,
        roger_client,
        roger_management,
        roger_partition,
        {"default": 20},
        nodes=2,
        jobs="examples.jobs",
    )
    env = dict(os.environ) | {
        "ROGER_AMQP_URL": roger_rabbitmq.amqp_url,
        "ROGER_ETCD": roger_etcd.endpoints,
        "ROGER_NAMESPACE": roger_namespace,
        "ROGER_PARTITION": roger_partition,
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    [port] = free_ports(1)
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    with gunicorn(env, port, log) as master:

        async def serving() -> bool:
            assert master.poll() is None, log.read_text()
            return await asyncio.to_thread(get, f"{base}/healthz") == 200

        await eventually(serving, timeout=30, message="gunicorn serving")
        await eventually(lambda: len(workers(master.pid)) == 2, timeout=30, message="2 workers")

        def post_all() -> list[str]:
            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                return list(pool.map(lambda i: post(f"{base}/signup", i), range(REQUESTS)))

        ids = await asyncio.to_thread(post_all)
        assert len(set(ids)) == REQUESTS
        await eventually(
            lambda: sum(ended(ledger).values()) >= REQUESTS, timeout=120, message="2,000 jobs run"
        )
        await asyncio.sleep(0.5)  # a duplicate would show within this; the count must stay exact
        runs = ended(ledger)
        assert set(runs) == set(ids)
        assert set(runs.values()) == {1}
        assert master.poll() is None and "Traceback" not in log.read_text(), log.read_text()
