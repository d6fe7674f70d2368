"""Queue consumers share channels (up to 8 a channel, 256 channels a connection, more
connections when needed), each with its own prefetch; a channel error takes down the
consumers of that channel only, and the node consumes their queues again.

Against private brokers: the test breaks a channel from inside RabbitMQ, and the big
test puts 10,000 queues on it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from roger_cluster import Client
from roger_cluster.broker import Broker
from roger_cluster.cluster import keys
from roger_cluster.cluster.etcd import Etcd, op_put
from roger_cluster.cluster.partitions import PartitionSpec
from roger_cluster.config import AmqpConfig, EtcdConfig
from roger_cluster.management import ConsumerInfo, Management
from roger_cluster.names import buried_queue_name, queue_name
from roger_cluster.runtime.channels import CHANNELS_PER_CONNECTION, CONSUMERS_PER_CHANNEL
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended, events
from roger_cluster.testing.servers import RabbitServer
from tests import jobs


async def _close(management: Management) -> None:
    """Close the API client's HTTP session, where it keeps one (an aiohttp session left
    open is an error under filterwarnings)."""
    close = getattr(management, "close", None)
    if close is not None:
        await close()


async def _consumers(management: Management, prefix: str) -> list[ConsumerInfo]:
    return [c for c in await management.all_consumers() if c.queue.startswith(prefix)]


def _break_channel(rabbit: RabbitServer, channel_name: str) -> None:
    """Make RabbitMQ close one channel with a channel error (406 PRECONDITION_FAILED, an
    ack of a delivery tag it never sent), as if the client had sent that ack on it."""
    named = f'[{{name, <<"{channel_name}">>}}]'
    found = f"[P || P <- rabbit_channel:list(), rabbit_channel:info(P, [name]) =:= {named}]"
    rabbit.ctl("eval", f"[P] = {found}, rabbit_channel:do(P, {{'basic.ack', 424242, false}}), ok.")


async def test_a_channel_error_recovers_its_consumers_and_leaves_the_other_channels_alone(
    private_rabbitmq: RabbitServer,
    roger_etcd_endpoints: str,
    roger_namespace: str,
    roger_partition: str,
    tmp_path: Path,
) -> None:
    amqp_url = private_rabbitmq.endpoint.amqp_url
    management = Management(private_rabbitmq.endpoint.management_url)
    ledger = tmp_path / "ledger"
    factory = NodeFactory(amqp_url, roger_etcd_endpoints, roger_namespace, tmp_path)
    queues = {f"q{i:02}": 1 + i % 3 for i in range(2 * CONSUMERS_PER_CHANNEL + 4)}
    prefix = f"{roger_partition}-"
    try:
        async with Client(amqp_url, roger_etcd_endpoints, roger_namespace) as client:
            await client.start_partition(roger_partition, queues)
            node = await factory.start(jobs="tests.jobs")
            expected = {queue_name(roger_partition, q): n for q, n in queues.items()}

            async def all_consumed() -> list[ConsumerInfo]:
                found = await _consumers(management, prefix)
                assert {c.queue: c.prefetch_count for c in found} == expected
                assert len(found) == len(expected)
                return found

            before = await eventually(all_consumed, timeout=30, interval=0.5)
            per_channel = Counter(c.channel_name for c in before)
            assert sorted(per_channel.values()) == [4, CONSUMERS_PER_CHANNEL, CONSUMERS_PER_CHANNEL]

            # A long job on another channel than the one that breaks.
            victim = next(name for name, n in per_channel.items() if n == CONSUMERS_PER_CHANNEL)
            bystander = next(c for c in before if c.channel_name != victim)
            long_job = jobs.Record.create({"ledger": str(ledger), "sleep": 4})
            await client.enqueue(long_job, roger_partition, bystander.queue.removeprefix(prefix))
            await eventually(
                lambda: [e["event"] for e in events(ledger, job_id=long_job.id)] == ["start"], timeout=15
            )

            assert victim is not None
            await asyncio.to_thread(_break_channel, private_rabbitmq, victim)

            untouched = {
                (c.queue, c.consumer_tag, c.channel_name) for c in before if c.channel_name != victim
            }
            lost = {c.queue for c in before if c.channel_name == victim}

            async def recovered() -> bool:
                after = await all_consumed()
                assert victim not in {c.channel_name for c in after}
                assert {(c.queue, c.consumer_tag, c.channel_name) for c in after if c.queue not in lost} == (
                    untouched
                )
                return True

            await eventually(recovered, timeout=30, interval=0.5)

            # The queues of the broken channel run jobs again; the long job ran once, unstopped.
            short = [jobs.Record.create({"ledger": str(ledger)}) for _ in lost]
            for job, queue in zip(short, sorted(lost), strict=True):
                await client.enqueue(job, roger_partition, queue.removeprefix(prefix))
            await eventually(lambda: all(ended(ledger)[j.id] == 1 for j in [*short, long_job]), timeout=20)
            assert [e["event"] for e in events(ledger, job_id=long_job.id)] == ["start", "end"]
            log = node.log()
            assert "PRECONDITION_FAILED" in log and "lost the connection" not in log, log
            assert node.returncode is None
    finally:
        factory.cleanup()
        await _close(management)


# Classic queues: 2,500 quorum partitions are 10,000 Raft groups (with the buried
# queues), ~3x the declare time and broker memory of classic ones on 2 vCPUs (see
# docs/scale.md); the sharing of channels does not depend on the queue type.
BIG_PARTITIONS = 2_500
BIG_QUEUES = {"default": 2, "other": 1}
DECLARES_AT_ONCE = 50
PUTS_PER_TXN = 64


@pytest.mark.timeout(400)
async def test_one_node_consumes_5000_queues_each_with_its_prefetch(
    private_rabbitmq: RabbitServer,
    roger_etcd_endpoints: str,
    roger_namespace: str,
    tmp_path: Path,
) -> None:
    amqp_url = private_rabbitmq.endpoint.amqp_url
    management = Management(private_rabbitmq.endpoint.management_url, timeout=60)
    factory = NodeFactory(
        amqp_url, roger_etcd_endpoints, roger_namespace, tmp_path, extra_env={"ROGER_QUEUE_TYPE": "classic"}
    )
    names = [f"big{i}" for i in range(BIG_PARTITIONS)]
    expected = {queue_name(n, q): prefetch for n in names for q, prefetch in BIG_QUEUES.items()}
    etcd = Etcd(EtcdConfig.from_string(roger_etcd_endpoints, roger_namespace))
    broker = Broker(AmqpConfig(url=amqp_url, queue_type="classic"))
    await etcd.connect()
    await broker.connect()
    try:
        started = time.monotonic()
        for start in range(0, len(names), DECLARES_AT_ONCE):  # declared first, as start_partition does
            chunk = names[start : start + DECLARES_AT_ONCE]
            await asyncio.gather(*(broker.declare(n, q) for n in chunk for q in BIG_QUEUES))
        declared = time.monotonic()
        node = await factory.start(jobs="tests.jobs")
        for start in range(0, len(names), PUTS_PER_TXN):
            ops = [
                op_put(keys.partition(roger_namespace, n), PartitionSpec(n, BIG_QUEUES).encode())
                for n in names[start : start + PUTS_PER_TXN]
            ]
            await etcd.txn([], ops)

        async def all_consumed() -> list[ConsumerInfo]:
            found = await _consumers(management, "big")
            assert len(found) == len(expected), f"{len(found)} consumers of {len(expected)}"
            return found

        found = await eventually(all_consumed, timeout=240, interval=3)
        consumed = time.monotonic()
        assert {c.queue: c.prefetch_count for c in found} == expected  # each queue's own prefetch
        per_channel = Counter(c.channel_name for c in found)
        assert max(per_channel.values()) <= CONSUMERS_PER_CHANNEL
        assert len(per_channel) == -(-len(expected) // CONSUMERS_PER_CHANNEL)  # channels filled up
        per_connection = Counter(c.connection_name for c in found)
        assert len(per_connection) == -(-len(per_channel) // CHANNELS_PER_CONNECTION)
        named = await management.connection_names()
        assert {named.get(c or "") for c in per_connection} == {node.name}  # all the node's, by name
        print(
            f"declared {len(expected)} queues in {declared - started:.1f}s; one node consumed them in"
            f" {consumed - declared:.1f}s on {len(per_channel)} channels, {len(per_connection)} connections"
        )
        assert node.returncode is None
    finally:
        factory.cleanup()
        await etcd.delete_prefix(roger_namespace + "/")
        await etcd.close()
        await _delete(broker, names)
        await broker.close()
        await _close(management)


async def _delete(broker: Broker, names: list[str]) -> None:
    """Delete the partitions' queues and buried queues (the broker is private, but a test
    leaves nothing behind)."""
    for start in range(0, len(names), DECLARES_AT_ONCE):
        chunk = names[start : start + DECLARES_AT_ONCE]
        made = [name(n, q) for n in chunk for q in BIG_QUEUES for name in (queue_name, buried_queue_name)]
        await asyncio.gather(*(broker.delete_queue(q) for q in made))
