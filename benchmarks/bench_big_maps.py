"""Big maps and the broker spread: the figures of docs/scale.md's section on them. Not a test.

Brokers (no server needed): N nodes named node0..node<N-1> rank 3 broker URLs by rendezvous
hashing of their names (`broker/spread.py`), as `roger-node` does. Printed: the nodes per broker
(max/mean), and where the nodes of a stopped broker go.

etcd (a private server started here): P partitions in the map, 64 puts per transaction. Printed:
- a whole read of the map in pages (`Etcd.get_prefix`, 1,000 keys a page): time, pages, bytes;
- the same read in one reply (`page_size = 0`): refused by gRPC once the map is over 4 MiB;
- F followers of the map (each its own client, as F nodes), through an etcd restart: the time from
  etcd answering again until every follower has seen a key put right then, the whole reads they
  made, and the bytes etcd sent them (its `etcd_network_client_grpc_sent_bytes_total`); then the
  same F followers reading the map whole at once, which is what each did after every outage before
  watches resumed, and what they still do when etcd compacted their revision meanwhile.

`--json` prints rows {"section": "big maps", "figure", "value", "unit"}; otherwise a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from roger_cluster.broker.spread import broker_order
from roger_cluster.cluster import keys
from roger_cluster.cluster.etcd import Etcd, WatchEvent, op_put
from roger_cluster.cluster.partitions import PartitionSpec, read_map
from roger_cluster.cluster.watch import follow_prefix
from roger_cluster.config import EtcdConfig
from roger_cluster.errors import ClusterError
from roger_cluster.testing.servers import EtcdServer

NAMESPACE = "bigmaps"
BROKERS = ["amqp://rabbit-0:5672/", "amqp://rabbit-1:5672/", "amqp://rabbit-2:5672/"]
PUTS_PER_TXN = 64
SAMPLES = 200
QUEUES = {"default": 2, "other": 1}
PREFIX = keys.partitions_prefix(NAMESPACE)
Row = tuple[str, float | None, str]  # (figure, value, unit); no value: the unit is the text


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def broker_rows(sizes: list[int]) -> list[Row]:
    rows: list[Row] = []
    for n in sizes:
        orders = [broker_order(BROKERS, f"node{i}") for i in range(n)]
        first = Counter(order[0] for order in orders)
        counts = [first[b] for b in range(len(BROKERS))]
        rows.append((f"{n} nodes over 3 brokers: per broker", None, " / ".join(map(str, counts))))
        rows.append((f"{n} nodes over 3 brokers: max/mean", max(counts) / statistics.mean(counts), "x"))
        rows.append((f"  same, mean over {SAMPLES} random sets of names", _mean_max_over_mean(n), "x"))
        moved = Counter(order[1] for order in orders if order[0] == 0)
        rows.append((f"{n} nodes, broker 0 stops: its nodes go to 1 / 2", None, f"{moved[1]} / {moved[2]}"))
    return rows


def _mean_max_over_mean(n: int) -> float:
    """max/mean of the nodes per broker, averaged over SAMPLES sets of n random node names."""
    rng = random.Random(16)
    ratios = []
    for _ in range(SAMPLES):
        first = Counter(broker_order(BROKERS, f"{rng.getrandbits(64):x}")[0] for _ in range(n))
        ratios.append(max(first[b] for b in range(len(BROKERS))) / (n / len(BROKERS)))
    return statistics.mean(ratios)


async def fill(etcd: Etcd, count: int) -> int:
    """Put `count` partitions of 2 queues; returns the bytes of keys and values."""
    size = 0
    for start in range(0, count, PUTS_PER_TXN):
        ops = []
        for i in range(start, min(start + PUTS_PER_TXN, count)):
            name = f"tenant{i:06}"
            key, value = keys.partition(NAMESPACE, name), PartitionSpec(name, QUEUES).encode()
            size += len(key) + len(value)
            ops.append(op_put(key, value))
        await etcd.txn([], ops)
    return size


def sent_bytes(server: EtcdServer) -> float:
    """etcd's gRPC bytes sent to clients so far."""
    with urllib.request.urlopen(f"http://{server.endpoint.endpoints}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    for line in text.splitlines():
        if line.startswith("etcd_network_client_grpc_sent_bytes_total"):
            return float(line.split()[-1])
    return 0.0


class Follower:
    """One node's mirror of the map: decodes every entry, as a node does."""

    def __init__(self) -> None:
        self.reads = 0
        self.names: set[str] = set()

    async def on_reset(self, state: dict[str, bytes]) -> None:
        self.reads += 1
        self.names = {PartitionSpec.decode(keys.name_of(PREFIX, k), v).name for k, v in state.items()}

    async def on_events(self, events: list[WatchEvent]) -> None:
        for event in events:
            name = keys.name_of(PREFIX, event.key)
            if event.value is None:
                self.names.discard(name)
            else:
                self.names.add(PartitionSpec.decode(name, event.value).name)


async def wait_for(check: object, timeout: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("not done in time")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def followers(config: EtcdConfig, count: int) -> AsyncIterator[list[tuple[Follower, Etcd]]]:
    made: list[tuple[Follower, Etcd]] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for _ in range(count):
            etcd = Etcd(config)
            await etcd.connect()
            follower = Follower()
            made.append((follower, etcd))
            follow = follow_prefix(etcd, PREFIX, follower.on_reset, follower.on_events)
            tasks.append(asyncio.create_task(follow))
        yield made
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, etcd in made:
            await etcd.close()


async def etcd_rows(server: EtcdServer, partitions: int, count: int) -> list[Row]:
    config = EtcdConfig.from_string(server.endpoint.endpoints, NAMESPACE)
    rows: list[Row] = []
    async with Etcd(config) as etcd:
        size = await fill(etcd, partitions)
        rows.append((f"map of {partitions} partitions: keys and values", size / 2**20, "MiB"))
        began = time.perf_counter()
        found, _ = await read_map(etcd, NAMESPACE)
        rows.append((f"read whole in pages of {etcd.page_size}", (time.perf_counter() - began) * 1000, "ms"))
        rows.append(("pages", -(-len(found) // etcd.page_size), ""))
        etcd.page_size = 0
        try:
            await etcd.get_prefix(PREFIX)
            rows.append(("read in one reply", None, "ok"))
        except ClusterError as e:
            why = str(e)
            rows.append(("read in one reply", None, "refused: " + why[why.find("Received") :]))
    async with followers(config, count) as made:
        await wait_for(lambda: all(f.reads == 1 and len(f.names) == partitions for f, _ in made), 300)
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        before, began = sent_bytes(server), time.perf_counter()
        async with Etcd(config) as etcd:
            await etcd.put(keys.partition(NAMESPACE, "after"), PartitionSpec("after", QUEUES).encode())
        await wait_for(lambda: all("after" in f.names for f, _ in made), 120)
        took, sent = time.perf_counter() - began, sent_bytes(server) - before
        rows.append((f"{count} followers after an etcd restart: all resumed", took * 1000, "ms"))
        rows.append(("  whole reads meanwhile", sum(f.reads - 1 for f, _ in made), ""))
        rows.append(("  bytes etcd sent them", sent / 2**10, "KiB"))
        before, began = sent_bytes(server), time.perf_counter()
        states = await asyncio.gather(*(etcd.get_prefix(PREFIX) for _, etcd in made))
        for (follower, _), (kvs, _) in zip(made, states, strict=True):
            await follower.on_reset({kv.key: kv.value for kv in kvs})
        took, sent = time.perf_counter() - began, sent_bytes(server) - before
        rows.append((f"{count} followers reading the map whole at once", took * 1000, "ms"))
        rows.append(("  bytes etcd sent them", sent / 2**20, "MiB"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--partitions", type=int, default=100_000, help="partitions in the map (100,000)")
    parser.add_argument("--followers", type=int, default=20, help="followers of the map (20)")
    parser.add_argument("--nodes", default="6,30,300,1000", help="node counts for the broker spread")
    parser.add_argument("--json", action="store_true", help="rows as JSON on stdout")
    args = parser.parse_args()
    rows = broker_rows([int(n) for n in args.nodes.split(",")])
    with tempfile.TemporaryDirectory(prefix="roger-bigmaps-") as tmp:
        server = EtcdServer(Path(tmp, "etcd"))
        try:
            server.start()
            say(f"etcd: {args.partitions} partitions, {args.followers} followers")
            rows += asyncio.run(etcd_rows(server, args.partitions, args.followers))
        finally:
            server.cleanup()
    if args.json:
        print(json.dumps([{"section": "big maps", "figure": f, "value": v, "unit": u} for f, v, u in rows]))
        return
    for figure, value, unit in rows:
        shown = unit if value is None else f"{value:,.2f} {unit}"
        print(f"{figure:<58} {shown}")


if __name__ == "__main__":
    main()
