"""TLS to RabbitMQ and etcd, etcd user/password auth, and secrets that never show."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trustme
from aetcd import rpc

from roger_cluster import BrokerConnectionError, Client, ClusterError
from roger_cluster.config import AmqpConfig, EtcdConfig, TlsFiles
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import ended
from roger_cluster.testing.rogerctl import rogerctl
from roger_cluster.testing.servers import EtcdServer, RabbitServer, free_ports
from tests import jobs

AMQP_PASSWORD = "amqp-s3cr3t-pw"
ETCD_PASSWORD = "etcd-s3cr3t-pw"


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, str]:
    """A throwaway CA, a server certificate for 127.0.0.1, and a client certificate."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("roger-client")
    files = {
        "ca": tmp_path / "ca.pem",
        "server_cert": tmp_path / "server.pem",
        "server_key": tmp_path / "server.key",
        "client_cert": tmp_path / "client.pem",
        "client_key": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client.private_key_pem.write_to_path(str(files["client_key"]))
    return {name: str(path) for name, path in files.items()}


@pytest.fixture
def tls_rabbitmq(tmp_path: Path, certs: dict[str, str]) -> Iterator[tuple[RabbitServer, int]]:
    """A private RabbitMQ with its own user, and a TLS listener that requires a client certificate."""
    server = RabbitServer(tmp_path / "tls-rabbitmq", username="roger", password=AMQP_PASSWORD)
    (tls_port,) = free_ports(1)
    conf = server.workdir / "conf.d"
    conf.mkdir(parents=True)
    (conf / "tls.conf").write_text(
        f"listeners.ssl.default = 127.0.0.1:{tls_port}\n"
        f"ssl_options.cacertfile = {certs['ca']}\n"
        f"ssl_options.certfile = {certs['server_cert']}\n"
        f"ssl_options.keyfile = {certs['server_key']}\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
    )
    server.start()
    yield server, tls_port
    server.cleanup()


@pytest.fixture
def tls_etcd(tmp_path: Path, certs: dict[str, str]) -> Iterator[tuple[EtcdServer, int]]:
    """A private etcd serving TLS with client certificates (and plain HTTP for its health probe)."""
    client_port, peer_port, tls_port = free_ports(3)
    server = EtcdServer(
        tmp_path / "tls-etcd",
        client_port=client_port,
        peer_port=peer_port,
        extra_args=[
            "--listen-client-urls", f"http://127.0.0.1:{client_port},https://127.0.0.1:{tls_port}",
            "--advertise-client-urls", f"https://127.0.0.1:{tls_port}",
            "--cert-file", certs["server_cert"],
            "--key-file", certs["server_key"],
            "--trusted-ca-file", certs["ca"],
            "--client-cert-auth",
        ],
    )  # fmt: skip
    server.start()
    yield server, tls_port
    server.cleanup()


async def enable_etcd_auth(config: EtcdConfig, password: str) -> None:
    """Create the root user and turn etcd auth on, over the TLS channel."""
    tls = config.tls
    assert tls is not None
    credentials = grpc.ssl_channel_credentials(
        tls.read(tls.ca_file), tls.read(tls.key_file), tls.read(tls.cert_file)
    )
    host, port = config.endpoints[0]
    async with grpc.aio.secure_channel(f"{host}:{port}", credentials) as channel:
        auth = rpc.AuthStub(channel)
        await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=password), timeout=5)
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"), timeout=5)
        await auth.AuthEnable(rpc.AuthEnableRequest(), timeout=5)


async def test_nodes_and_clients_work_over_tls_with_etcd_auth_and_never_show_a_password(
    tls_rabbitmq: tuple[RabbitServer, int],
    tls_etcd: tuple[EtcdServer, int],
    certs: dict[str, str],
    roger_namespace: str,
    roger_partition: str,
    tmp_path: Path,
    ledger: Path,
) -> None:
    rabbit, amqps_port = tls_rabbitmq
    etcd, etcd_tls_port = tls_etcd
    amqp_url = f"amqps://roger:{AMQP_PASSWORD}@127.0.0.1:{amqps_port}/"
    client_tls = TlsFiles(certs["ca"], certs["client_cert"], certs["client_key"])
    etcd_config = EtcdConfig.from_string(
        f"https://127.0.0.1:{etcd_tls_port}",
        roger_namespace,
        tls=client_tls,
        user="root",
        password=ETCD_PASSWORD,
    )
    await enable_etcd_auth(etcd_config, ETCD_PASSWORD)
    url_file = tmp_path / "amqp-url"
    url_file.write_text(amqp_url)
    environment = {
        "ROGER_AMQP_URL": "",
        "ROGER_AMQP_URL_FILE": str(url_file),  # the password is in no argv and no env value
        "ROGER_AMQP_CA": certs["ca"],
        "ROGER_AMQP_CERT": certs["client_cert"],
        "ROGER_AMQP_KEY": certs["client_key"],
        "ROGER_ETCD_CA": certs["ca"],
        "ROGER_ETCD_CERT": certs["client_cert"],
        "ROGER_ETCD_KEY": certs["client_key"],
        "ROGER_ETCD_USER": "root",
        "ROGER_ETCD_PASSWORD": ETCD_PASSWORD,
    }
    factory = NodeFactory(
        amqp_url, f"https://127.0.0.1:{etcd_tls_port}", roger_namespace, tmp_path, extra_env=environment
    )
    try:
        node = await factory.start(jobs="tests.jobs")
        amqp = AmqpConfig(url=amqp_url, tls=client_tls)
        async with Client(amqp_config=amqp, etcd_config=etcd_config) as client:
            await client.start_partition(roger_partition, {"default": 2})
            job = jobs.Record.create({"ledger": str(ledger)})
            await client.enqueue(job, roger_partition)
            await eventually(lambda: ended(ledger)[job.id] == 1, timeout=20)
            assert [n.name for n in await client.nodes()] == [node.name]

        outputs = [
            rogerctl(factory, "nodes"),
            rogerctl(factory, "--json", "nodes"),
            rogerctl(factory, "--json", "partition", "show", roger_partition),
            rogerctl(factory, "partition", "list"),
        ]
        assert all(o.returncode == 0 for o in outputs), [o.stderr for o in outputs]
        assert json.loads(outputs[1].stdout)[0]["name"] == node.name
        # Without the etcd user, etcd refuses us.
        anonymous = EtcdConfig.from_string(
            f"https://127.0.0.1:{etcd_tls_port}", roger_namespace, tls=client_tls
        )
        with pytest.raises(ClusterError, match="user name is empty|authentication|permission denied"):
            async with Client(
                amqp_config=AmqpConfig(url=amqp_url, tls=client_tls), etcd_config=anonymous
            ) as c:
                await c.nodes()
        # Without a client certificate the broker refuses us, and the error hides the password.
        no_cert = AmqpConfig(url=amqp_url, tls=TlsFiles(certs["ca"]))
        with pytest.raises(BrokerConnectionError) as refused:
            async with Client(amqp_config=no_cert, etcd_config=etcd_config) as client:
                await client.broker()
        wrong_port = rogerctl(
            factory,
            "--amqp-url",
            f"amqp://roger:{AMQP_PASSWORD}@127.0.0.1:1/",
            "job",
            "enqueue",
            roger_partition,
            "tests.jobs:Record",
            "{}",
        )
        assert wrong_port.returncode == 1
        texts = [node.log(), str(refused.value)] + [o.stdout + o.stderr for o in [*outputs, wrong_port]]
        for text in texts:
            assert AMQP_PASSWORD not in text and ETCD_PASSWORD not in text, text
    finally:
        factory.cleanup()
