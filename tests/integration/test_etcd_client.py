"""Our etcd client against a real etcd: the parts the cluster relies on."""

from __future__ import annotations

import asyncio
import sys

import pytest

from roger_cluster import ClusterConnectionError
from roger_cluster.cluster.etcd import Etcd
from roger_cluster.config import EtcdConfig
from roger_cluster.errors import Compacted
from roger_cluster.testing.servers import EtcdServer


async def test_create_is_atomic_and_reports_the_holder(
    roger_etcd_endpoints: str, roger_namespace: str
) -> None:
    async with Etcd(EtcdConfig.from_string(roger_etcd_endpoints, roger_namespace)) as etcd:
        key = f"{roger_namespace}/k"
        results = await asyncio.gather(*(etcd.create(key, str(i).encode()) for i in range(20)))
        winners = [r for r in results if r is None]
        assert len(winners) == 1
        holder = (await etcd.get(key)) or pytest.fail("key missing")
        assert all(r == holder for r in results if r is not None)
        await etcd.delete_prefix(roger_namespace + "/")


async def test_a_lease_reports_its_remaining_and_granted_ttl_and_minus_one_once_revoked(
    roger_etcd_endpoints: str, roger_namespace: str
) -> None:
    async with Etcd(EtcdConfig.from_string(roger_etcd_endpoints, roger_namespace)) as etcd:
        lease = await etcd.grant(30)
        ttl = await etcd.lease_ttl(lease)
        assert ttl.granted == 30 and 28 <= ttl.remaining <= 30
        await etcd.revoke(lease)
        assert (await etcd.lease_ttl(lease)).remaining == -1


async def test_a_watch_from_a_compacted_revision_says_so(private_etcd: EtcdServer) -> None:
    async with Etcd(EtcdConfig.from_string(private_etcd.endpoint.endpoints, "c")) as etcd:
        first = await etcd.put("c/x", b"1")
        latest = await etcd.put("c/x", b"2")
        await etcd.compact(latest)
        with pytest.raises(Compacted):
            async for batch in etcd.watch_prefix("c/", first):
                assert not batch.events, "a compacted watch delivered events"


async def test_a_broken_watch_raises_a_connection_error(private_etcd: EtcdServer) -> None:
    async with Etcd(EtcdConfig.from_string(private_etcd.endpoint.endpoints, "w")) as etcd:
        _, revision = await etcd.get_prefix("w/")

        async def consume() -> None:
            async for _ in etcd.watch_prefix("w/", revision + 1):
                pass

        task = asyncio.create_task(consume())
        private_etcd.stop()
        with pytest.raises(ClusterConnectionError):
            await asyncio.wait_for(task, 30)


FORK_SCRIPT = """
import asyncio, os, sys
from roger_cluster import Client

async def used() -> Client:
    client = Client(etcd=sys.argv[1], namespace=sys.argv[2])
    await client.nodes()
    return client  # not closed: its etcd channel stays open

parent = asyncio.run(used())
pid = os.fork()
if pid == 0:
    async def child() -> None:
        client = Client(etcd=sys.argv[1], namespace=sys.argv[2])
        await asyncio.wait_for(client.nodes(), 10)

    try:
        asyncio.run(child())
        print("child: answered")
    except Exception as e:
        print("child:", type(e).__name__, e)
    sys.stdout.flush()
    os._exit(0)
os.waitpid(pid, 0)
"""


async def test_a_child_forked_with_an_open_etcd_channel_fails_fast_naming_the_fix(
    roger_etcd_endpoints: str, roger_namespace: str
) -> None:
    # A fresh interpreter: the fork must not inherit the test process's own gRPC state.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FORK_SCRIPT,
        roger_etcd_endpoints,
        roger_namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    line = out.decode().strip()
    # Before the check, the child's call hung until its 10 s bound (TimeoutError).
    assert line.startswith("child: ClusterConnectionError"), line
    assert "close the Client before forking" in line and "SyncClient" in line
