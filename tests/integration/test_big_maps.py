"""Big maps: prefixes read in pages, and watches that resume after an etcd outage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from roger_cluster.cluster import keys
from roger_cluster.cluster.etcd import Etcd, WatchEvent, op_put
from roger_cluster.cluster.partitions import PartitionSpec, put_partition, read_map
from roger_cluster.cluster.watch import follow_prefix
from roger_cluster.config import EtcdConfig
from roger_cluster.errors import ClusterError
from roger_cluster.testing import eventually
from roger_cluster.testing.servers import EtcdServer


@pytest.fixture
async def private(private_etcd: EtcdServer) -> AsyncIterator[Etcd]:
    async with Etcd(EtcdConfig.from_string(private_etcd.endpoint.endpoints, "big")) as etcd:
        yield etcd


async def test_a_map_bigger_than_one_page_is_read_whole(
    roger_etcd_endpoints: str, roger_namespace: str
) -> None:
    async with Etcd(EtcdConfig.from_string(roger_etcd_endpoints, roger_namespace)) as etcd:
        try:
            written = {f"p{i:02}": PartitionSpec(f"p{i:02}", {"default": i + 1}) for i in range(25)}
            for spec in written.values():
                await put_partition(etcd, roger_namespace, spec)
            etcd.page_size = 4  # 7 pages
            found, revision = await read_map(etcd, roger_namespace)
            assert found == written
            assert revision == (await etcd.get_prefix(roger_namespace + "/"))[1]
        finally:
            await etcd.delete_prefix(roger_namespace + "/")


async def test_a_map_over_gRPCs_4_MiB_reply_limit_is_read_whole(private: Etcd) -> None:
    # 1,000 partitions of 50 queues with long names: 5 MB, over what one reply may carry.
    spec = PartitionSpec("x", {f"q{j:02}_{'x' * 90}": 1 for j in range(50)})
    value = spec.encode()
    for batch in range(10):  # etcd takes at most 128 operations per transaction
        puts = [op_put(keys.partition("big", f"p{batch}{i:02}"), value) for i in range(100)]
        await private.txn([], puts)
    assert 1000 * len(value) > 4 * 2**20
    private.page_size = 0  # one reply: refused by gRPC on our side
    with pytest.raises(ClusterError, match="larger than max"):
        await read_map(private, "big")
    private.page_size = 1000  # a page of 1,000 is too big too: asked again at 500
    found, _ = await read_map(private, "big")
    assert len(found) == 1000 and all(s.queues == spec.queues for s in found.values())


class Mirror:
    """What `follow_prefix` reported: how often it read the prefix whole, and the keys."""

    def __init__(self) -> None:
        self.resets = 0
        self.keys: dict[str, bytes] = {}
        self.hold: asyncio.Event | None = None  # set: `on_events` waits for it

    async def on_reset(self, state: dict[str, bytes]) -> None:
        self.resets += 1
        self.keys = dict(state)

    async def on_events(self, events: list[WatchEvent]) -> None:
        if self.hold is not None:
            await self.hold.wait()
        for event in events:
            if event.value is None:
                self.keys.pop(event.key, None)
            else:
                self.keys[event.key] = event.value


@contextlib.asynccontextmanager
async def following(etcd: Etcd, mirror: Mirror) -> AsyncIterator[None]:
    task = asyncio.create_task(follow_prefix(etcd, "big/", mirror.on_reset, mirror.on_events))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_watch_resumes_after_an_etcd_restart_without_reading_again(
    private: Etcd, private_etcd: EtcdServer
) -> None:
    mirror = Mirror()
    await private.put("big/a", b"1")
    async with following(private, mirror):
        await eventually(lambda: mirror.keys == {"big/a": b"1"})
        await private.put("big/b", b"2")
        await eventually(lambda: "big/b" in mirror.keys)
        await asyncio.to_thread(private_etcd.stop)
        await asyncio.to_thread(private_etcd.start)
        await private.put("big/c", b"3")
        await private.delete("big/a")
        await eventually(lambda: mirror.keys == {"big/b": b"2", "big/c": b"3"}, timeout=15)
        assert mirror.resets == 1


async def test_a_watch_reads_again_when_etcd_compacted_its_revision_meanwhile(
    private: Etcd, private_etcd: EtcdServer
) -> None:
    mirror = Mirror()
    async with following(private, mirror):
        await eventually(lambda: mirror.resets == 1)
        mirror.hold = asyncio.Event()  # the next batch waits while etcd restarts and compacts
        await private.put("big/a", b"1")
        await asyncio.to_thread(private_etcd.stop)
        await asyncio.to_thread(private_etcd.start)
        await private.put("big/b", b"2")
        await private.compact(await private.put("big/c", b"3"))
        mirror.hold.set()  # "big/a" applied; the watch breaks; revision "big/a" + 1 is gone
        await eventually(lambda: mirror.keys == {"big/a": b"1", "big/b": b"2", "big/c": b"3"}, timeout=15)
        assert mirror.resets == 2
