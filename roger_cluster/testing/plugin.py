"""The pytest plugin: real servers once per session, isolation per test.

Servers are found in the brief's order (environment, Docker, local binaries;
see `servers.py`) and started once per session. Each test gets its own etcd
namespace and partition names, so tests never see each other's state, and
every node or queue a test made is removed when it ends.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ..client import Client
from ..management import Management
from ..names import release_queue_name
from .nodes import NodeFactory
from .servers import (
    EtcdEndpoint,
    EtcdServer,
    RabbitEndpoint,
    RabbitServer,
    find_etcd,
    find_rabbitmq,
    free_ports,
)


@pytest.fixture(scope="session")
def roger_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdEndpoint]:
    """A real etcd for the whole session."""
    endpoint, cleanup = find_etcd(tmp_path_factory.mktemp("etcd"))
    try:
        yield endpoint
    finally:
        cleanup()


@pytest.fixture(scope="session")
def roger_rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitEndpoint]:
    """A real RabbitMQ with the management API for the whole session."""
    endpoint, cleanup = find_rabbitmq(tmp_path_factory.mktemp("rabbitmq"))
    try:
        yield endpoint
    finally:
        cleanup()


@pytest.fixture
def roger_namespace() -> str:
    """An etcd namespace of this test's own."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def roger_partition() -> str:
    """A partition name of this test's own (its queues are deleted after the test)."""
    return f"p{uuid.uuid4().hex[:10]}"


@pytest.fixture
def roger_management(roger_rabbitmq: RabbitEndpoint) -> Management:
    """The management API of the session's RabbitMQ."""
    return Management(roger_rabbitmq.management_url)


@pytest.fixture
async def roger_client(
    roger_etcd: EtcdEndpoint,
    roger_rabbitmq: RabbitEndpoint,
    roger_namespace: str,
    roger_partition: str,
    roger_management: Management,
) -> AsyncIterator[Client]:
    """A Client on this test's namespace; the test partition's queues go afterwards."""
    client = Client(
        roger_rabbitmq.amqp_url,
        roger_etcd.endpoints,
        roger_namespace,
        management_url=roger_rabbitmq.management_url,
    )
    async with client:
        yield client
        etcd = await client.etcd()
        await etcd.delete_prefix(roger_namespace + "/")
    await roger_management.delete_queues(roger_partition + "-")
    await roger_management.delete_queues(release_queue_name(roger_namespace))  # the nodes' release queue


@pytest.fixture
def node_factory(
    roger_etcd: EtcdEndpoint,
    roger_rabbitmq: RabbitEndpoint,
    roger_namespace: str,
    tmp_path: Path,
) -> Iterator[NodeFactory]:
    """Starts real roger-node processes for this test; kills them all after it."""
    factory = NodeFactory(
        roger_rabbitmq.amqp_url,
        roger_etcd.endpoints,
        roger_namespace,
        tmp_path,
        management_url=roger_rabbitmq.management_url,
    )
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """An etcd of this test's own, from the local binary, that the test may stop and restart."""
    server = EtcdServer(tmp_path / "private-etcd")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def private_rabbitmq(tmp_path: Path) -> Iterator[RabbitServer]:
    """A RabbitMQ of this test's own (with management) that the test may stop and restart."""
    server = RabbitServer(tmp_path / "private-rabbitmq")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def roger_rabbitmq_url(roger_rabbitmq: RabbitEndpoint) -> str:
    """The AMQP URL of the session's RabbitMQ."""
    return roger_rabbitmq.amqp_url


@pytest.fixture
def roger_etcd_endpoints(roger_etcd: EtcdEndpoint) -> str:
    """The endpoints of the session's etcd."""
    return roger_etcd.endpoints


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[list[EtcdServer]]:
    """A private 3-member etcd cluster; members may be stopped and restarted one by one."""
    ports = free_ports(6)
    names = [f"m{i}" for i in range(3)]
    initial = ",".join(f"{n}=http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names))
    members = [
        EtcdServer(
            tmp_path / f"etcd-{name}",
            name=name,
            client_port=ports[2 * i],
            peer_port=ports[2 * i + 1],
            initial_cluster=initial,
        )
        for i, name in enumerate(names)
    ]
    try:
        for member in members:
            member.spawn()
        for member in members:
            member.wait_ready()
        yield members
    finally:
        for member in members:
            member.cleanup()


@pytest.fixture
def rabbitmq_cluster(tmp_path: Path) -> Iterator[list[RabbitServer]]:
    """A private 3-node RabbitMQ cluster (quorum queues replicate over it)."""
    cookie = secrets.token_hex(16).upper()
    servers = [RabbitServer(tmp_path / f"rabbit-{i}") for i in range(3)]
    for server in servers:  # one Erlang cookie, or the nodes cannot talk
        home = server.workdir / "home"
        home.mkdir(parents=True)
        (home / ".erlang.cookie").write_text(cookie)
        (home / ".erlang.cookie").chmod(0o400)
    try:
        for server in servers:
            server.spawn()
        for server in servers:
            server.wait_ready()
        for server in servers[1:]:
            server.ctl("stop_app")
            server.ctl("join_cluster", servers[0].node_name)
            server.ctl("start_app")
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.cleanup()
