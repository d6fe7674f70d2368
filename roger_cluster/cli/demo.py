"""The demo, one function for both ways of running it: `scripts/demo` on this
machine (`testing/cluster.py` starts the servers and nodes, then calls
`run_demo`) and in Docker (the Compose `demo` service runs
`python -m roger_cluster.cli.demo` against the Compose cluster). Both print
the same lines, so the quickstart describes one demo.

It starts partition `myapp` (default=10, other=5), enqueues fifteen demo jobs
and returns once they ran: no job is ready in RabbitMQ (read over AMQP, which
is exact) and no node runs one (asked over the nodes' control queues), twice
in a row. It touches only the cluster, never the nodes' logs, so it works
wherever the nodes run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from ..client import Client
from ..demo import Hello, Sleep
from ..errors import RogerError
from ..job import Job
from .common import Exit, Parser, add_connection_flags, amqp_config, env, etcd_config, explain, fail, parse

PARTITION = "myapp"
QUEUES = {"default": 10, "other": 5}


async def _idle(client: Client, partition: str) -> bool:
    info = await client.partition(partition)
    if any(q.ready != 0 for q in info.queues):
        return False
    return not (await client.running(partition)).jobs


async def run_demo(client: Client, partition: str = PARTITION, timeout: float = 60.0) -> int:
    """Start the partition, run the demo jobs, wait until they ran; returns how many."""
    await client.set_partition(partition, QUEUES)
    print(f"partition {partition} started: " + " ".join(f"{q}={n}" for q, n in QUEUES.items()))
    batch: list[Job] = [Sleep.create({"seconds": 0.5}) for _ in range(12)]
    batch += [Hello.create({"name": f"demo {i}"}) for i in range(3)]
    await client.enqueue_many(batch, partition)
    print(f"enqueued {len(batch)} demo jobs")
    deadline = time.monotonic() + timeout
    idle_in_a_row = 0
    while idle_in_a_row < 2:
        if time.monotonic() > deadline:
            raise RogerError(f"the demo jobs did not finish within {timeout:g} s: are the nodes running?")
        await asyncio.sleep(0.3)
        idle_in_a_row = idle_in_a_row + 1 if await _idle(client, partition) else 0
    nodes = await client.nodes()
    print(f"{len(batch)} demo jobs ran on {len(nodes)} node(s): " + ", ".join(n.name for n in nodes))
    return len(batch)


def parser() -> argparse.ArgumentParser:
    """The demo's parser: the connection flags of rogerctl, with their environment."""
    p = Parser(
        prog="python -m roger_cluster.cli.demo",
        description=f"Start partition {PARTITION} and run demo jobs on a running cluster"
        " (nodes started with --jobs roger_cluster.demo).",
    )
    add_connection_flags(p)
    p.add_argument("--partition", default=PARTITION, help="the partition to use (default %(default)s)")
    p.add_argument(
        "--management-url",
        default=env("ROGER_MANAGEMENT_URL", ""),
        help="RabbitMQ management API (env ROGER_MANAGEMENT_URL; default: port 15672 on the AMQP host)",
    )
    return p


async def _main(args: argparse.Namespace) -> None:
    client = Client(
        management_url=args.management_url or None,
        amqp_config=amqp_config(args),
        etcd_config=etcd_config(args),
    )
    async with client:
        await run_demo(client, args.partition)


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m roger_cluster.cli.demo`."""
    args = parse(parser(), argv)
    try:
        asyncio.run(_main(args))
    except RogerError as e:
        return fail("demo", Exit.FAILED, explain(e, args.namespace))
    return Exit.OK


if __name__ == "__main__":
    sys.exit(main())
