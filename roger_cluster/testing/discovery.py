"""Finding etcd and RabbitMQ for a test session, in a fixed order.

Why it exists: the product's tests are real (docs/testing.md): they talk
to a real etcd and a real RabbitMQ, nothing is mocked or skipped. The
session fixtures take the first of:

1. endpoints given in the environment (`ROGER_TEST_ETCD`; `ROGER_TEST_AMQP_URL`
   with `ROGER_TEST_MANAGEMENT_URL`): used as they are, never stopped;
2. a reachable Docker engine: containers through testcontainers;
3. the `etcd` / `rabbitmq-server` binaries: private servers started here, in a
   folder of their own on free ports (`etcd.py`, `rabbitmq.py`). Only these
   can be stopped, killed and restarted (same ports, same data) by fault tests;
4. none of these: `RuntimeError` saying how to get one.

Each finder returns the endpoint and the cleanup that releases it, so a
server we did not start is never stopped. Credentials are part of the URLs
(`amqp://guest:guest@…`, `http://guest:guest@…`): one string per endpoint is
what the CLI flags and `ROGER_AMQP_URL` take too.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

from .etcd import ETCD_IMAGE, GET_ETCD, EtcdEndpoint, EtcdServer, find_etcd_binary
from .probes import etcd_is_healthy, rabbitmq_is_ready
from .processes import LocalServer, wait_until
from .rabbitmq import (
    FAST_STATS_CONFIG,
    GET_RABBITMQ,
    RABBITMQ_IMAGE,
    RabbitEndpoint,
    RabbitServer,
    find_rabbitmq_scripts,
)

__all__ = ["Cleanup", "docker_is_available", "find_etcd", "find_rabbitmq"]

Cleanup = Callable[[], None]


def find_etcd(
    workdir: Path,
    environ: Mapping[str, str] | None = None,
) -> tuple[EtcdEndpoint, Cleanup]:
    """An etcd for the tests and the cleanup that releases it (see module docstring)."""
    env = os.environ if environ is None else environ
    given = env.get("ROGER_TEST_ETCD")
    if given:
        return EtcdEndpoint(given), _nothing
    if docker_is_available():
        return _etcd_container()
    if find_etcd_binary() is not None:
        server = EtcdServer(workdir / "etcd")
        _start_or_clean(server)
        return server.endpoint, server.cleanup
    raise RuntimeError(f"No etcd for the tests: {GET_ETCD}")


def find_rabbitmq(
    workdir: Path,
    environ: Mapping[str, str] | None = None,
) -> tuple[RabbitEndpoint, Cleanup]:
    """A RabbitMQ with management for the tests and the cleanup that releases it."""
    env = os.environ if environ is None else environ
    amqp_url = env.get("ROGER_TEST_AMQP_URL")
    management_url = env.get("ROGER_TEST_MANAGEMENT_URL")
    if amqp_url and management_url:
        return RabbitEndpoint(amqp_url, management_url), _nothing
    if amqp_url or management_url:
        raise RuntimeError(
            "Set both ROGER_TEST_AMQP_URL and ROGER_TEST_MANAGEMENT_URL (e.g. "
            "http://guest:guest@localhost:15672): tests check consumers through the "
            "management API"
        )
    if docker_is_available():
        return _rabbitmq_container()
    if find_rabbitmq_scripts() is not None:
        server = RabbitServer(workdir / "rabbitmq")
        _start_or_clean(server)
        return server.endpoint, server.cleanup
    raise RuntimeError(f"No RabbitMQ for the tests: {GET_RABBITMQ}")


def _nothing() -> None:
    """Cleanup of a server we did not start: it is not ours to stop."""


def _start_or_clean(server: LocalServer) -> None:
    try:
        server.start()
    except BaseException:
        server.cleanup()
        raise


def docker_is_available(timeout: float = 5) -> bool:
    """True if testcontainers can reach a Docker engine; the `docker` CLI alone is not enough.

    Asks the engine itself (a ping) through testcontainers' own client, so the
    answer follows the same DOCKER_HOST / docker context / properties it will use.
    """
    try:
        from testcontainers.core.docker_client import DockerClient, get_docker_host
    except ImportError:  # the test extras are not installed
        return False
    if get_docker_host() is None and not Path("/var/run/docker.sock").exists():
        return False
    with warnings.catch_warnings():
        # The docker SDK leaks its socket when the engine does not answer; under
        # pytest's "warnings are errors" that would fail some unrelated test later.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = DockerClient(timeout=timeout).client
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:  # no socket, no engine behind DOCKER_HOST, engine error
            return False
        finally:
            gc.collect()  # collect the leaked socket while its warning is ignored


def _etcd_container(timeout: float = 60) -> tuple[EtcdEndpoint, Cleanup]:
    """etcd in Docker. Clients use the mapped port; the advertised URL is in-container.

    aetcd talks to the endpoints it is given and does not follow advertised
    client URLs, so advertising the container's own address is harmless.
    """
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer(ETCD_IMAGE)
        .with_exposed_ports(2379)
        .with_command(
            [
                "etcd",
                "--name", "roger-test",
                "--data-dir", "/etcd-data",
                "--listen-client-urls", "http://0.0.0.0:2379",
                "--advertise-client-urls", "http://127.0.0.1:2379",
                "--listen-peer-urls", "http://127.0.0.1:2380",
                "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                "--initial-cluster", "roger-test=http://127.0.0.1:2380",
            ]
        )
    )  # fmt: skip
    try:
        container.start()
        host = container.get_container_host_ip()
        port = container.get_exposed_port(2379)
        wait_until("etcd container", lambda: etcd_is_healthy(host, port), timeout)
    except BaseException:
        container.stop()
        raise
    return EtcdEndpoint(f"{host}:{port}"), container.stop


_CONTAINER_RABBITMQ_CONF = "\n".join(
    [
        "collect_statistics_interval = 500",
        *FAST_STATS_CONFIG,
        "",
    ]
).encode()


def _rabbitmq_container(timeout: float = 90) -> tuple[RabbitEndpoint, Cleanup]:
    """RabbitMQ with management in Docker, its statistics as fresh as the private node's.

    The image's own config lets guest/guest in from outside the container.
    """
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer(RABBITMQ_IMAGE)
        .with_exposed_ports(5672, 15672)
        .with_copy_into_container(
            _CONTAINER_RABBITMQ_CONF,
            "/etc/rabbitmq/conf.d/90-roger-test.conf",
        )
    )
    try:
        container.start()
        host = container.get_container_host_ip()
        amqp, management = container.get_exposed_port(5672), container.get_exposed_port(15672)
        endpoint = RabbitEndpoint(
            amqp_url=f"amqp://guest:guest@{host}:{amqp}/",
            management_url=f"http://guest:guest@{host}:{management}",
        )
        wait_until(
            "rabbitmq container",
            lambda: rabbitmq_is_ready(host, amqp, endpoint.management_url),
            timeout,
        )
    except BaseException:
        container.stop()
        raise
    return endpoint, container.stop
