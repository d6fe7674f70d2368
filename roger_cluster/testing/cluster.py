"""A whole local cluster on one machine, for the README's demo command.

Starts a private etcd, a private RabbitMQ with its management console, three
`roger-node` processes allowed to run `roger_cluster.demo`, starts partition
`myapp` and runs a few demo jobs; then waits for Ctrl-C (or, with `--once`,
stops everything at once) and leaves nothing running.

    python -m roger_cluster.testing.cluster [--once] [--nodes 3] [--dir .demo]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from ..cli import demo as cli_demo
from ..client import Client
from .nodes import NodeFactory
from .servers import EtcdServer, RabbitServer, free_ports
from .wait import eventually

CONSOLE_PORT = 15672
PARTITION = "myapp"


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port`."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def run_demo(client: Client, factory: NodeFactory) -> None:
    """The demo of `cli/demo.py` (the same as in Docker), then where the jobs ran,
    read from the nodes' logs (which only this local cluster has at hand)."""
    count = await cli_demo.run_demo(client)

    def ran() -> int:
        return sum(node.log().count("demo job") for node in factory.nodes)

    await eventually(lambda: ran() >= count, timeout=30, interval=0.2)
    for node in factory.nodes:
        print(f"  {node.name} ran {node.log().count('demo job')} demo job(s)")


def print_where(client: Client, rabbit: RabbitServer, etcd: EtcdServer, workdir: Path) -> None:
    """Tell the user where everything is."""
    amqp = rabbit.endpoint.amqp_url
    print()
    print(f"RabbitMQ console: http://127.0.0.1:{rabbit.management_port}  (guest / guest)")
    print(f"Node logs:        {workdir}/node*.log")
    print("Try, in another shell:")
    print(f"  export ROGER_AMQP_URL={amqp} ROGER_ETCD={etcd.endpoint.endpoints}")
    print(f"  export ROGER_MANAGEMENT_URL={rabbit.endpoint.management_url}")
    print(f"  .venv/bin/rogerctl nodes; .venv/bin/rogerctl partition show {PARTITION}")
    print("  .venv/bin/rogerctl dashboard    # then open http://127.0.0.1:8080")


async def wait_for_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("Ctrl-C stops the cluster.")
    await stop.wait()


def fresh_workdir(path: str) -> Path:
    """An empty work folder: `path` emptied, or a new temporary folder."""
    if not path:
        return Path(tempfile.mkdtemp(prefix="roger-demo-"))
    workdir = Path(path).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    return workdir


async def main_async(args: argparse.Namespace, workdir: Path) -> None:
    etcd = EtcdServer(workdir / "etcd")
    rabbit = RabbitServer(workdir / "rabbitmq")
    if port_is_free(CONSOLE_PORT):  # the console where people expect it, if we can
        rabbit.amqp_port, rabbit.dist_port = free_ports(2)
        rabbit.management_port = CONSOLE_PORT
    factory: NodeFactory | None = None
    try:
        print("starting etcd and RabbitMQ (RabbitMQ takes a few seconds)...")
        etcd.start()
        await asyncio.to_thread(rabbit.start)
        endpoint = rabbit.endpoint
        factory = NodeFactory(
            endpoint.amqp_url,
            etcd.endpoint.endpoints,
            "roger",
            workdir,
            management_url=endpoint.management_url,
            extra_env={"ROGER_LEASE_TTL": "10"},
        )
        await factory.start_many(args.nodes)
        print(f"{args.nodes} nodes running: " + ", ".join(n.name for n in factory.nodes))
        async with Client(
            endpoint.amqp_url, etcd.endpoint.endpoints, management_url=endpoint.management_url
        ) as client:
            await run_demo(client, factory)
            print_where(client, rabbit, etcd, workdir)
            if not args.once:
                await wait_for_signal()
    finally:
        print("stopping...")
        if factory is not None:
            for node in factory.nodes:
                node.signal(signal.SIGTERM)
            for node in factory.nodes:
                with contextlib.suppress(AssertionError):
                    await node.wait_exit(15)
            factory.cleanup()
        await asyncio.to_thread(rabbit.cleanup)
        etcd.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m roger_cluster.testing.cluster`."""
    p = argparse.ArgumentParser(description="Run a local roger_cluster with a demo.")
    p.add_argument("--once", action="store_true", help="stop everything after the demo")
    p.add_argument("--nodes", type=int, default=3, help="how many nodes (default %(default)s)")
    p.add_argument("--dir", default="", help="work folder (default: a new temporary folder)")
    args = p.parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main_async(args, fresh_workdir(args.dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
