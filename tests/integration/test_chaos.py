"""At-least-once delivery under chaos: a ledger of every job, faults in turn.

Jobs are enqueued at a steady rate over three nodes while, one after the
other: a node is killed with SIGKILL and restarted; a node gets SIGTERM and is
restarted; the private RabbitMQ is stopped and started; the private etcd is
stopped and started; a node is frozen (SIGSTOP) past its lease TTL and thawed.
Every confirmed job must finish at least once, no job may be left in a queue,
and no node other than the victims may need a restart. Duplicates are counted
(expected only for jobs in flight at a fault).

As a test it runs a short round; as a soak script it runs longer:

    .venv/bin/python -m tests.integration.test_chaos --rate 200 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from roger_cluster import Client, RogerError
from roger_cluster.management import Management
from roger_cluster.testing import NodeFactory, NodeProcess, eventually
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.servers import EtcdServer, RabbitServer
from tests import jobs

LEASE_TTL = 3


@dataclass
class Chaos:
    """One chaos run: servers, nodes, the producer and what it confirmed."""

    client: Client
    factory: NodeFactory
    rabbit: RabbitServer
    etcd: EtcdServer
    partition: str
    ledger: Path
    rate: float
    nodes: list[NodeProcess] = field(default_factory=list)
    confirmed: set[str] = field(default_factory=set)
    recovery: list[tuple[str, float]] = field(default_factory=list)
    victims: set[int] = field(default_factory=set)

    async def produce(self, stop: asyncio.Event, at_least: int) -> None:
        """Enqueue about `rate` jobs per second until `stop` and `at_least` were confirmed."""
        batch = max(1, int(self.rate / 10))
        while not stop.is_set() or len(self.confirmed) < at_least:
            todo = [jobs.Record.create({"ledger": str(self.ledger)}) for _ in range(batch)]
            results = await asyncio.gather(
                *(self.client.enqueue(job, self.partition) for job in todo), return_exceptions=True
            )
            self.confirmed.update(r for r in results if isinstance(r, str))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    async def recovered(self, name: str, since: float) -> None:
        """Wait until a job finishes after `since`; record how long that took."""

        def flowing() -> bool:
            return any(e["t"] > since for e in events(self.ledger, "end")[-50:])

        await eventually(flowing, timeout=60, interval=0.05, message=f"jobs flowing after {name}")
        self.recovery.append((name, time.time() - since))

    def replace(self, node: NodeProcess) -> NodeProcess:
        """Start a node with the victim's name again."""
        self.victims.add(node.pid)
        fresh = self.factory.spawn(node.name, jobs="tests.jobs")
        self.nodes[self.nodes.index(node)] = fresh
        return fresh

    async def kill_node(self) -> None:
        victim = self.nodes[0]
        victim.kill()
        await self.replace(victim).wait_started()
        await self.recovered("SIGKILL a node, restart it", time.time())

    async def term_node(self) -> None:
        victim = self.nodes[1]
        victim.signal(signal.SIGTERM)
        assert await victim.wait_exit(30) == 0, victim.log()
        await self.replace(victim).wait_started()
        await self.recovered("SIGTERM a node, restart it", time.time())

    async def restart_rabbitmq(self) -> None:
        await asyncio.to_thread(self.rabbit.stop)
        await asyncio.to_thread(self.rabbit.start)
        await self.recovered("stop and start RabbitMQ", time.time())

    async def restart_etcd(self) -> None:
        await asyncio.to_thread(self.etcd.stop)
        await asyncio.to_thread(self.etcd.start)
        await self.recovered("stop and start etcd", time.time())

    async def freeze_node(self) -> None:
        victim = self.nodes[2]
        victim.signal(signal.SIGSTOP)
        try:  # frozen until etcd has dropped it: its lease expired

            async def dropped() -> bool:
                return victim.name not in [n.name for n in await self.client.nodes()]

            await eventually(dropped, timeout=LEASE_TTL + 10)
        finally:
            victim.signal(signal.SIGCONT)
        await self.recovered("SIGSTOP a node past its lease TTL, thaw it", time.time())

    def faults(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.kill_node, self.term_node, self.restart_rabbitmq, self.restart_etcd, self.freeze_node]


@dataclass(frozen=True)
class Report:
    jobs: int
    faults: int
    lost: int
    duplicated: int
    recovery: list[tuple[str, float]]

    def text(self) -> str:
        lines = [
            f"jobs confirmed: {self.jobs}",
            f"faults injected: {self.faults}",
            f"lost: {self.lost}",
            f"duplicated (ran more than once): {self.duplicated}",
            "time to recover (first job finished after the fault was over):",
        ]
        lines += [f"  {name}: {seconds:.2f}s" for name, seconds in self.recovery]
        return "\n".join(lines)


async def run_chaos(chaos: Chaos, management: Management, rounds: int = 1, at_least: int = 3000) -> Report:
    """Start the nodes, produce while injecting every fault `rounds` times, then settle up."""
    chaos.nodes = await chaos.factory.start_many(3, jobs="tests.jobs")
    await chaos.client.start_partition(chaos.partition, {"default": 10})
    stop = asyncio.Event()
    producer = asyncio.create_task(chaos.produce(stop, at_least))
    try:
        await eventually(lambda: len(ended(chaos.ledger)) > 50, timeout=30)
        for _ in range(rounds):
            for fault in chaos.faults():
                await fault()
    finally:
        stop.set()
        await producer

    async def drained() -> bool:
        queues = [q for q in await management.queues() if q.name.startswith(chaos.partition)]
        return bool(queues) and all(q.messages == 0 for q in queues)

    await eventually(lambda: set(ended(chaos.ledger)) >= chaos.confirmed, timeout=120, interval=0.5)
    await eventually(drained, timeout=60, interval=0.5)
    counts = ended(chaos.ledger)
    for node in chaos.nodes:
        assert node.returncode is None, f"node {node.name} died:\n{node.log()}"
    return Report(
        jobs=len(chaos.confirmed),
        faults=len(chaos.recovery),
        lost=len(chaos.confirmed - set(counts)),
        duplicated=sum(1 for job_id in chaos.confirmed if counts[job_id] > 1),
        recovery=chaos.recovery,
    )


async def test_no_confirmed_job_is_lost_through_node_broker_and_etcd_faults(
    private_rabbitmq: RabbitServer,
    private_etcd: EtcdServer,
    roger_namespace: str,
    roger_partition: str,
    tmp_path: Path,
) -> None:
    rabbit = private_rabbitmq.endpoint
    etcd = private_etcd.endpoint.endpoints
    factory = NodeFactory(
        rabbit.amqp_url, etcd, roger_namespace, tmp_path, management_url=rabbit.management_url
    )
    try:
        async with Client(rabbit.amqp_url, etcd, roger_namespace) as client:
            chaos = Chaos(
                client, factory, private_rabbitmq, private_etcd, roger_partition, tmp_path / "ledger", 400
            )
            async with Management(rabbit.management_url) as management:
                report = await run_chaos(chaos, management)
    finally:
        factory.cleanup()
    print(report.text())
    assert report.jobs >= 3000
    assert report.faults == 5
    assert report.lost == 0
    assert report.duplicated <= 10 * 10 * report.faults  # at most what was in flight at each fault


def main() -> int:
    """The soak script: a longer run, figures printed."""
    parser = argparse.ArgumentParser(description="at-least-once delivery under chaos (soak)")
    parser.add_argument("--rate", type=float, default=200, help="jobs enqueued per second")
    parser.add_argument("--rounds", type=int, default=3, help="times every fault is injected")
    parser.add_argument("--jobs", type=int, default=20000, help="at least this many jobs in all")
    args = parser.parse_args()

    async def soak() -> Report:
        workdir = Path(tempfile.mkdtemp(prefix="roger-soak-"))
        rabbit, etcd = RabbitServer(workdir / "rabbitmq"), EtcdServer(workdir / "etcd")
        factory: NodeFactory | None = None
        try:
            etcd.start()
            await asyncio.to_thread(rabbit.start)
            endpoint = rabbit.endpoint
            factory = NodeFactory(endpoint.amqp_url, etcd.endpoint.endpoints, "soak", workdir)
            async with Client(endpoint.amqp_url, etcd.endpoint.endpoints, "soak") as client:
                chaos = Chaos(client, factory, rabbit, etcd, "soak", workdir / "ledger", args.rate)
                async with Management(endpoint.management_url) as management:
                    return await run_chaos(chaos, management, args.rounds, args.jobs)
        finally:
            if factory is not None:
                factory.cleanup()
            await asyncio.to_thread(rabbit.cleanup)
            etcd.cleanup()

    try:
        print(asyncio.run(soak()).text())
    except (AssertionError, RogerError) as e:
        print(f"soak failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
