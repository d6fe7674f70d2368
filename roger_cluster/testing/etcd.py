"""A private etcd member or cluster from the local `etcd` binary.

Why it exists: fault tests stop, kill and restart etcd under running nodes,
which only a server of our own allows. A private member keeps to its own
ports and data folder (`workdir`), never the machine's etcd; ETCD_*
variables of our environment are not passed on, since they would override or
clash with the flags. Its lifecycle is `processes.LocalServer`'s.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .probes import etcd_is_healthy, free_ports
from .processes import LocalServer, clean_env

__all__ = ["ETCD_IMAGE", "GET_ETCD", "EtcdEndpoint", "EtcdServer", "etcd_cluster", "find_etcd_binary"]

ETCD_IMAGE = "quay.io/coreos/etcd:v3.5.17"

GET_ETCD = (
    "run scripts/setup (it installs etcd), or set ROGER_TEST_ETCD=host:port to use a running "
    f"etcd, or install and start Docker so that testcontainers can run {ETCD_IMAGE}"
)


@dataclass(frozen=True)
class EtcdEndpoint:
    """Where etcd answers: "host:port", or a comma-separated list for a cluster."""

    endpoints: str


def find_etcd_binary() -> Path | None:
    """The `etcd` executable: on PATH, or where distributions put it."""
    found = shutil.which("etcd")
    if found:
        return Path(found)
    for folder in ("/usr/bin", "/usr/local/bin", "/usr/sbin", "/opt/etcd"):
        candidate = Path(folder, "etcd")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class EtcdServer(LocalServer):
    """A private etcd member, data under `workdir` (owned by this object).

    Single-member by default. For one member of a cluster, give every member
    its `name`, its ports, and the same `initial_cluster`
    ("n1=http://127.0.0.1:p1,n2=…"), `spawn()` them all, then `wait_ready()`
    each (`processes.start_all`): a member is healthy only once the cluster
    has a leader. `etcd_cluster` builds such members.
    """

    start_timeout: ClassVar[float] = 30
    stop_timeout: ClassVar[float] = 10
    log_name: ClassVar[str] = "etcd.log"

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "roger-test",
        host: str = "127.0.0.1",
        client_port: int | None = None,
        peer_port: int | None = None,
        initial_cluster: str | None = None,
        initial_cluster_state: str = "new",
        binary: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir, host)
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self._initial_cluster = initial_cluster
        self._initial_cluster_state = initial_cluster_state
        self._binary = binary
        self._extra_args = tuple(extra_args)

    @property
    def label(self) -> str:
        return f"etcd {self.name}"

    @property
    def address(self) -> str:
        return self.client_url

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self._ports()[0]}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self._ports()[1]}"

    @property
    def endpoint(self) -> EtcdEndpoint:
        return EtcdEndpoint(f"{self.host}:{self._ports()[0]}")

    def _assign_ports(self) -> None:
        if self.client_port is None or self.peer_port is None:
            self.client_port, self.peer_port = free_ports(2, self.host)

    def _command(self) -> tuple[list[str], dict[str, str]]:
        binary = self._binary or find_etcd_binary()
        if binary is None:
            raise RuntimeError(f"etcd is not installed: {GET_ETCD}")
        cluster = self._initial_cluster or f"{self.name}={self.peer_url}"
        argv = [
            str(binary),
            "--name", self.name,
            "--data-dir", str(self.workdir / "data"),
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", cluster,
            "--initial-cluster-state", self._initial_cluster_state,
            "--logger", "zap",  # 3.4 warns that its default logger is deprecated
            *self._extra_args,
        ]  # fmt: skip
        return argv, clean_env("ETCD_")

    def _is_ready(self) -> bool:
        return etcd_is_healthy(self.host, self._ports()[0])

    def _ports(self) -> tuple[int, int]:
        if self.client_port is None or self.peer_port is None:
            raise RuntimeError("etcd server has no ports until start()")
        return self.client_port, self.peer_port


def etcd_cluster(workdir: Path, size: int = 3) -> list[EtcdServer]:
    """`size` members of one new cluster (not started), each in `workdir/etcd-m<i>`.

    Start them together (`processes.start_all` or `processes.running`): a
    member is ready only once a majority runs.
    """
    ports = free_ports(2 * size)
    names = [f"m{i}" for i in range(size)]
    initial = ",".join(f"{n}=http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names))
    return [
        EtcdServer(
            workdir / f"etcd-{name}",
            name=name,
            client_port=ports[2 * i],
            peer_port=ports[2 * i + 1],
            initial_cluster=initial,
        )
        for i, name in enumerate(names)
    ]
