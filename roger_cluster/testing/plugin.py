"""The pytest plugin: real servers once per session, isolation per test.

Servers are found in the brief's order (environment, Docker, local binaries;
see `discovery.py`) and started once per session. Each test gets its own etcd
namespace and partition names, so tests never see each other's state, and
every node or queue a test made is removed when it ends.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ..client import Client
from ..management import Management
from .discovery import find_etcd, find_rabbitmq
from .etcd import EtcdEndpoint, EtcdServer
from .etcd import etcd_cluster as _etcd_cluster
from .nodes import NodeFactory
from .processes import running
from .rabbitmq import RabbitEndpoint, RabbitServer, delete_test_objects, join_cluster
from .rabbitmq import rabbitmq_cluster as _rabbitmq_cluster


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
def ledger(tmp_path: Path) -> Path:
    """A ledger file of this test's own for jobs to `record` events in (see `ledger.py`)."""
    return tmp_path / "ledger"


@pytest.fixture
async def roger_management(roger_rabbitmq: RabbitEndpoint) -> AsyncIterator[Management]:
    """The management API of the session's RabbitMQ (its connections closed after the test)."""
    async with Management(roger_rabbitmq.management_url) as management:
        yield management


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
    await delete_test_objects(roger_management, roger_namespace, roger_partition + "-")


@pytest.fixture
def node_factory(
    roger_etcd: EtcdEndpoint,
    roger_rabbitmq: RabbitEndpoint,
    roger_namespace: str,
    tmp_path: Path,
    roger_client: Client,
) -> Iterator[NodeFactory]:
    """Starts real roger-node processes for this test; kills them all after it.

    It asks for `roger_client` so that the nodes are gone before the client's cleanup
    deletes the namespace's queues (a live node would declare its due queue again)."""
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
    with running(EtcdServer(tmp_path / "private-etcd")) as [server]:
        yield server


@pytest.fixture
def private_rabbitmq(tmp_path: Path) -> Iterator[RabbitServer]:
    """A RabbitMQ of this test's own (with management) that the test may stop and restart."""
    with running(RabbitServer(tmp_path / "private-rabbitmq")) as [server]:
        yield server


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
    with running(*_etcd_cluster(tmp_path)) as members:
        yield members


@pytest.fixture
def rabbitmq_cluster(tmp_path: Path) -> Iterator[list[RabbitServer]]:
    """A private 3-node RabbitMQ cluster (quorum queues replicate over it)."""
    with running(*_rabbitmq_cluster(tmp_path)) as servers:
        join_cluster(servers)
        yield servers
