"""A private RabbitMQ node or cluster, with the management plugin, from the local scripts.

Why it exists: fault tests stop, kill and restart the broker under running
nodes, and the tests read consumers through the management API within about
a second, which needs statistics fresher than RabbitMQ's defaults. A private
node never touches the machine's own broker: its own ports, node name,
Erlang cookie, config, mnesia and log folders under `workdir`; the system's
`/etc/rabbitmq` files are not read. The machine's epmd (port 4369) is shared
with the system broker: it is used, never stopped. Its lifecycle is
`processes.LocalServer`'s.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..management import Management
from ..names import namespace_prefix
from .probes import free_ports, rabbitmq_is_ready
from .processes import LocalServer, clean_env

__all__ = [
    "FAST_STATS_CONFIG",
    "GET_RABBITMQ",
    "RABBITMQ_IMAGE",
    "RabbitEndpoint",
    "RabbitServer",
    "find_rabbitmq_scripts",
    "join_cluster",
    "rabbitmq_cluster",
]

RABBITMQ_IMAGE = "rabbitmq:3-management"

GET_RABBITMQ = (
    "run scripts/setup (it installs rabbitmq-server), or set ROGER_TEST_AMQP_URL and "
    "ROGER_TEST_MANAGEMENT_URL to use a running broker with the management plugin, or "
    f"install and start Docker so that testcontainers can run {RABBITMQ_IMAGE}"
)

# The management agent aggregates what the broker reports once per the
# finest sample-retention granularity (5 s by default; whole seconds only),
# whatever collect_statistics_interval says: 1 s keeps consumer lists fresh.
FAST_STATS_CONFIG = (
    "management.rates_mode = basic",
    "management.sample_retention_policies.global.minute = 1",
    "management.sample_retention_policies.global.hour = 60",
    "management.sample_retention_policies.global.day = 1200",
    "management.sample_retention_policies.basic.minute = 1",
    "management.sample_retention_policies.basic.hour = 60",
    "management.sample_retention_policies.detailed.10 = 1",
)


@dataclass(frozen=True)
class RabbitEndpoint:
    """Where RabbitMQ answers; both URLs carry the credentials in their userinfo."""

    amqp_url: str  # amqp://guest:guest@127.0.0.1:5673/
    management_url: str  # http://guest:guest@127.0.0.1:15673


def find_rabbitmq_scripts() -> Path | None:
    """The folder holding the real `rabbitmq-server` and `rabbitmqctl` scripts.

    Debian's `/usr/sbin/rabbitmq-server` is a wrapper that switches to the
    `rabbitmq` user and logs to /var/log: it would start the system's node,
    not ours. Symlinks are resolved to the scripts it wraps
    (`/usr/lib/rabbitmq/lib/rabbitmq_server-X/sbin`).
    """
    folders = ("/usr/lib/rabbitmq/bin", "/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
    candidates = [shutil.which("rabbitmq-server"), *(f"{f}/rabbitmq-server" for f in folders)]
    for candidate in candidates:
        if not candidate or not os.path.isfile(candidate):
            continue
        real = Path(candidate).resolve()
        if real.name == "rabbitmq-server" and (real.parent / "rabbitmqctl").is_file():
            return real.parent
    return None


class RabbitServer(LocalServer):
    """A private RabbitMQ node with the management plugin, files under `workdir`.

    Its own node name (`roger-test-<random>@localhost`), AMQP, Erlang
    distribution and management ports on 127.0.0.1, config, enabled-plugins
    file, Erlang cookie (`HOME` is the workdir), mnesia and log folders.
    Statistics are emitted every `stats_interval_ms` and aggregated every
    second (RabbitMQ's defaults: 5 s each), so the management API shows a new
    consumer or a changed message count within about a second. Ready means
    AMQP and the management API both answer.

    `stop` sends SIGTERM to `rabbitmq-server`, whose trap passes it on to the
    VM, which shuts RabbitMQ down in order. Timings on RabbitMQ 3.10: about
    7 s to start; about 6 s to stop, 5 of them spent by the management
    agent's shutdown hook, after the message stores have already been closed.
    """

    start_timeout: ClassVar[float] = 60
    stop_timeout: ClassVar[float] = 30
    log_name: ClassVar[str] = "rabbitmq-server.log"

    def __init__(
        self,
        workdir: Path,
        *,
        node_name: str | None = None,
        host: str = "127.0.0.1",
        username: str = "guest",
        password: str = "guest",
        scripts: Path | None = None,
        stats_interval_ms: int = 500,
    ) -> None:
        super().__init__(workdir, host)
        self.node_name = node_name or f"roger-test-{secrets.token_hex(4)}@localhost"
        self.username = username
        self.password = password
        self._scripts = scripts
        self._stats_interval_ms = stats_interval_ms
        self.amqp_port: int | None = None
        self.dist_port: int | None = None
        self.management_port: int | None = None

    @property
    def label(self) -> str:
        return f"rabbitmq {self.node_name}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self._ports()[0]}"

    @property
    def endpoint(self) -> RabbitEndpoint:
        amqp, _, management = self._ports()
        creds = f"{_quote(self.username)}:{_quote(self.password)}"
        return RabbitEndpoint(
            amqp_url=f"amqp://{creds}@{self.host}:{amqp}/",
            management_url=f"http://{creds}@{self.host}:{management}",
        )

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run `rabbitmqctl -n <node> args…` against this node; its stdout."""
        if not self.running:
            raise RuntimeError(f"rabbitmq {self.node_name} is not running")
        argv = [str(self._scripts_dir() / "rabbitmqctl"), "-n", self.node_name, *args]
        done = subprocess.run(
            argv, env=self._env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def write_cookie(self, cookie: str) -> None:
        """Give the node this Erlang cookie (before its first start): nodes of a cluster share one."""
        home = self.workdir / "home"
        home.mkdir(parents=True)
        (home / ".erlang.cookie").write_text(cookie)
        (home / ".erlang.cookie").chmod(0o400)

    def _assign_ports(self) -> None:
        if self.amqp_port is None or self.dist_port is None or self.management_port is None:
            self.amqp_port, self.dist_port, self.management_port = free_ports(3, self.host)

    def _command(self) -> tuple[list[str], dict[str, str]]:
        scripts = self._scripts_dir()
        return [str(scripts / "rabbitmq-server")], self._write_files()

    def _is_ready(self) -> bool:
        return rabbitmq_is_ready(self.host, self._ports()[0], self.endpoint.management_url)

    def _scripts_dir(self) -> Path:
        scripts = self._scripts or find_rabbitmq_scripts()
        if scripts is None:
            raise RuntimeError(f"rabbitmq-server is not installed: {GET_RABBITMQ}")
        return scripts

    def _ports(self) -> tuple[int, int, int]:
        if self.amqp_port is None or self.dist_port is None or self.management_port is None:
            raise RuntimeError("rabbitmq server has no ports until start()")
        return self.amqp_port, self.dist_port, self.management_port

    def _write_files(self) -> dict[str, str]:
        """Write config, plugins list, cookie; return the server's environment."""
        amqp, _, management = self._ports()
        home = self.workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        (self.workdir / "conf.d").mkdir(exist_ok=True)
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.workdir / "rabbitmq-env.conf").write_text(
            "# Empty on purpose: keeps /etc/rabbitmq/rabbitmq-env.conf out of this node.\n"
        )
        config = [
            f"listeners.tcp.local = {self.host}:{amqp}",
            f"management.tcp.ip = {self.host}",
            f"management.tcp.port = {management}",
            f"collect_statistics_interval = {self._stats_interval_ms}",
            *FAST_STATS_CONFIG,
            "log.console = false",
            "log.file.level = info",
        ]
        if (self.username, self.password) != ("guest", "guest"):
            config += [f"default_user = {self.username}", f"default_pass = {self.password}"]
        (self.workdir / "rabbitmq.conf").write_text("\n".join(config) + "\n")
        return self._env()

    def _env(self) -> dict[str, str]:
        _, dist, _ = self._ports()
        w = self.workdir
        env = clean_env("RABBITMQ_", "ERL_")
        env.update(
            HOME=str(w / "home"),  # the Erlang cookie lives in $HOME
            ERL_EPMD_ADDRESS="127.0.0.1",  # only used if epmd is not running yet
            RABBITMQ_NODENAME=self.node_name,
            RABBITMQ_DIST_PORT=str(dist),
            RABBITMQ_CONF_ENV_FILE=str(w / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(w / "rabbitmq.conf"),
            RABBITMQ_CONFIG_FILES=str(w / "conf.d"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(w / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(w / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(w / "mnesia"),
            RABBITMQ_LOG_BASE=str(w / "log"),
            RABBITMQ_PID_FILE=str(w / "rabbitmq.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def rabbitmq_cluster(workdir: Path, size: int = 3) -> list[RabbitServer]:
    """`size` nodes (not started) in `workdir/rabbit-<i>` sharing one Erlang cookie.

    Start them together, then `join_cluster` them.
    """
    cookie = secrets.token_hex(16).upper()
    servers = [RabbitServer(workdir / f"rabbit-{i}") for i in range(size)]
    for server in servers:  # one Erlang cookie, or the nodes cannot talk
        server.write_cookie(cookie)
    return servers


def join_cluster(servers: Sequence[RabbitServer]) -> None:
    """Join every running node to the first, then wait until each answers again."""
    for server in servers[1:]:
        server.ctl("stop_app")
        server.ctl("join_cluster", servers[0].node_name)
        server.ctl("start_app")
    for server in servers:
        server.wait_ready()


async def delete_test_objects(management: Management, namespace: str, queues: str) -> None:
    """Delete what a test left on a RabbitMQ: its partitions' queues (the names starting
    with `queues`), then its namespace's own queues and exchanges (the release queue, the
    delay levels). Stop the test's nodes first: a live node declares its queues again."""
    await management.delete_queues(queues)
    await management.delete_queues(namespace_prefix(namespace))
    await management.delete_exchanges(namespace_prefix(namespace))
