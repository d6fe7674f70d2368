"""Node names across restarts: a node run as a container runs it (PID 1 of a pid
namespace of its own, the same host name every time) takes its name back at
once after a crash, while a second live node with that name is refused."""

from __future__ import annotations

import signal
import time

import pytest

from roger_cluster import Client
from roger_cluster.cluster.membership import NodeInfo
from roger_cluster.testing import NodeFactory, eventually

# A container runtime gives each run a new pid namespace and, usually, its own /proc.
UNSHARE = ("unshare", "--pid", "--fork", "--kill-child")
CONTAINER = (*UNSHARE, "--mount-proc")
# Long enough that waiting out the dead run's lease would fail every bound below.
TTL = "30"


async def holder(client: Client, name: str) -> NodeInfo:
    """The registration of node `name` (AssertionError while there is none)."""
    infos = [n for n in await client.nodes() if n.name == name]
    assert infos, f"no node {name} registered"
    return infos[0]


@pytest.mark.parametrize("wrapper", [CONTAINER, UNSHARE], ids=["own-proc", "host-proc"])
async def test_a_node_restarted_as_pid_1_of_a_new_pid_namespace_takes_its_name_back_at_once(
    node_factory: NodeFactory, roger_client: Client, wrapper: tuple[str, ...]
) -> None:
    began = time.monotonic()
    first = await node_factory.start("box", wrapper=wrapper, ROGER_LEASE_TTL=TTL)
    start_up = time.monotonic() - began
    old = await holder(roger_client, "box")
    assert old.pid == 1 and old.instance

    # A second live node with the name, started the same way, is refused.
    twin = node_factory.spawn("box", wrapper=wrapper, ROGER_LEASE_TTL=TTL)
    assert await twin.wait_exit(30) == 3, twin.log()
    assert "already taken by a live node" in twin.log()
    assert first.returncode is None
    assert (await holder(roger_client, "box")).instance == old.instance

    first.kill()  # the whole process group: unshare and the node
    restarted_at = time.monotonic()
    second = node_factory.spawn("box", wrapper=wrapper, ROGER_LEASE_TTL=TTL)

    async def taken_back() -> NodeInfo:
        info = await holder(roger_client, "box")
        assert info.instance != old.instance, "still held by the killed run"
        return info

    new = await eventually(taken_back, timeout=start_up + 5, message="(the name was not taken back)")
    assert time.monotonic() - restarted_at < int(TTL) - 10
    assert new.pid == 1
    await second.wait_started()
    assert second.returncode is None
    assert "taking it over" in second.log()


async def test_a_frozen_node_whose_name_was_taken_over_stops_with_exit_code_3(
    node_factory: NodeFactory, roger_client: Client
) -> None:
    first = await node_factory.start("box", wrapper=CONTAINER, ROGER_LEASE_TTL=TTL)
    old = await holder(roger_client, "box")
    first.signal_group(signal.SIGSTOP)  # it stops refreshing its lease, as if it had died
    try:
        second = await node_factory.start("box", wrapper=CONTAINER, ROGER_LEASE_TTL=TTL)
    finally:
        first.signal_group(signal.SIGCONT)
    new = await holder(roger_client, "box")
    assert new.instance != old.instance

    # Back, the first finds its lease revoked and the name held by a live node: it stops.
    assert await first.wait_exit(30) == 3, first.log()
    assert "lost its name" in first.log()
    assert second.returncode is None
    assert (await holder(roger_client, "box")).instance == new.instance
