"""Real etcd and RabbitMQ servers for the test suite and the local demo cluster.

Why it exists: the product's tests are real (DESIGN.md, "Tests are real"): they
talk to a real etcd and a real RabbitMQ, nothing is mocked or skipped. The
fixtures find those servers in the order the brief fixes:

1. endpoints given in the environment (`ROGER_TEST_ETCD`; `ROGER_TEST_AMQP_URL`
   with `ROGER_TEST_MANAGEMENT_URL`): used as they are, never stopped;
2. a reachable Docker engine: containers through testcontainers;
3. the `etcd` / `rabbitmq-server` binaries: private servers started here, in a
   folder of their own on free ports. Only these can be stopped, killed and
   restarted (same ports, same data) by fault tests;
4. none of these: `RuntimeError` saying how to get one.

Invariants this module protects:

- A private server never touches the machine's own servers: its own ports,
  data and log folders, RabbitMQ node name, Erlang cookie and config files (the
  system's `/etc/rabbitmq` files are not read). The machine's epmd (port 4369)
  is shared with the system broker: it is used, never stopped.
- No process outlives the run: every server runs in a process group of its
  own, killed as a whole by `stop`/`kill`/`cleanup`, and by an atexit hook as
  a fallback when a test run forgets.
- Every wait is bounded by a timeout, and a server that dies while starting
  fails at once with the tail of its log.

Credentials are part of the URLs (`amqp://guest:guest@…`,
`http://guest:guest@…`): one string per endpoint is what the CLI flags and
`ROGER_AMQP_URL` take too.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from roger_cluster.management import Management, ManagementError

__all__ = [
    "ETCD_IMAGE",
    "RABBITMQ_IMAGE",
    "EtcdEndpoint",
    "EtcdServer",
    "RabbitEndpoint",
    "RabbitServer",
    "amqp_is_ready",
    "docker_is_available",
    "etcd_is_healthy",
    "find_etcd",
    "find_etcd_binary",
    "find_rabbitmq",
    "find_rabbitmq_scripts",
    "free_ports",
]

ETCD_IMAGE = "quay.io/coreos/etcd:v3.5.17"
RABBITMQ_IMAGE = "rabbitmq:3-management"

Cleanup = Callable[[], None]

_GET_ETCD = (
    "run scripts/setup (it installs etcd), or set ROGER_TEST_ETCD=host:port to use a running "
    f"etcd, or install and start Docker so that testcontainers can run {ETCD_IMAGE}"
)
_GET_RABBITMQ = (
    "run scripts/setup (it installs rabbitmq-server), or set ROGER_TEST_AMQP_URL and "
    "ROGER_TEST_MANAGEMENT_URL to use a running broker with the management plugin, or "
    f"install and start Docker so that testcontainers can run {RABBITMQ_IMAGE}"
)


@dataclass(frozen=True)
class EtcdEndpoint:
    """Where etcd answers: "host:port", or a comma-separated list for a cluster."""

    endpoints: str


@dataclass(frozen=True)
class RabbitEndpoint:
    """Where RabbitMQ answers; both URLs carry the credentials in their userinfo."""

    amqp_url: str  # amqp://guest:guest@127.0.0.1:5673/
    management_url: str  # http://guest:guest@127.0.0.1:15673


# -- probes that speak the real protocols ----------------------------------

_AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
_CONNECTION_START = b"\x00\x0a\x00\x0a"  # class 10 (connection), method 10 (start)


def amqp_is_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    """Send the AMQP 0-9-1 protocol header; a ready broker answers Connection.Start.

    An open TCP port is not enough: RabbitMQ binds its listener before it
    accepts connections (aio-pika's own conftest probes the same way).
    """
    data = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_AMQP_HEADER)
            while len(data) < 11:
                chunk = sock.recv(11 - len(data))
                if not chunk:
                    return False
                data += chunk
    except OSError:
        return False
    # a method frame (type 1) on channel 0 whose payload starts with class+method
    return data[0] == 1 and data[1:3] == b"\x00\x00" and data[7:11] == _CONNECTION_START


def etcd_is_healthy(host: str, port: int, timeout: float = 1.0) -> bool:
    """GET /health on the client port: true once the member has a leader and no alarm."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=timeout) as reply:
            body = json.loads(reply.read())
    except (OSError, ValueError):  # refused, 503 while electing, garbage
        return False
    return isinstance(body, dict) and body.get("health") == "true"


def _management_is_ready(url: str) -> bool:
    try:
        return "node" in Management(url, timeout=1.0).overview_blocking()
    except ManagementError:
        return False


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free on `host` now (bound together, then released)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# -- one child process in its own process group ----------------------------

_live: set[_Process] = set()
_atexit_registered = False


def _kill_leftovers() -> None:
    """atexit fallback: SIGKILL every server a test run forgot to stop."""
    for process in list(_live):
        process.kill()


class _Process:
    """A server process in a new session, so its whole group can be signalled."""

    def __init__(self, what: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.what = what
        self.argv = list(argv)
        self.env = dict(env)
        self.log = log
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def spawn(self, cwd: Path) -> None:
        global _atexit_registered
        if not _atexit_registered:
            atexit.register(_kill_leftovers)
            _atexit_registered = True
        with self.log.open("ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} starting {self.what}\n".encode())
            out.flush()
            self._popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _live.add(self)

    def terminate(self, timeout: float) -> None:
        """SIGTERM to the leader (it shuts down cleanly), SIGKILL to the group after."""
        popen = self._popen
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole group (also what a leader left behind), then reap it."""
        popen = self._popen
        if popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(10)
        _live.discard(self)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _wait_until(
    what: str, ready: Callable[[], bool], timeout: float, process: _Process | None = None
) -> None:
    """Poll `ready` until it holds; fail fast if `process` dies, or after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while not ready():
        if process is not None and not process.alive:
            log = f"{process.log}:\n{process.tail()}"
            raise RuntimeError(f"{what} exited while starting (code {process.returncode}); {log}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tail = "" if process is None else f"; {process.log}:\n{process.tail()}"
            raise TimeoutError(f"{what} not ready within {timeout:g}s{tail}")
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 0.5)


def _clean_env(*prefixes: str) -> dict[str, str]:
    """Our environment without variables that would reconfigure the server."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


# -- etcd ------------------------------------------------------------------


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


class EtcdServer:
    """A private etcd member, data under `workdir` (owned by this object).

    Single-member by default. For one member of a cluster, give every member
    its `name`, its ports, and the same `initial_cluster`
    ("n1=http://127.0.0.1:p1,n2=…"), `spawn()` them all, then `wait_ready()`
    each: a member is healthy only once the cluster has a leader.
    """

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
        self.workdir = workdir
        self.name = name
        self.host = host
        self.client_port = client_port
        self.peer_port = peer_port
        self._initial_cluster = initial_cluster
        self._initial_cluster_state = initial_cluster_state
        self._binary = binary
        self._extra_args = tuple(extra_args)
        self._process: _Process | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self._ports()[0]}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self._ports()[1]}"

    @property
    def endpoint(self) -> EtcdEndpoint:
        return EtcdEndpoint(f"{self.host}:{self._ports()[0]}")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.alive

    def start(self, timeout: float = 30) -> None:
        """Start (or restart, same ports and data) and wait until healthy."""
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting; a no-op while it runs."""
        if self.running:
            return
        if self.client_port is None or self.peer_port is None:
            self.client_port, self.peer_port = free_ports(2, self.host)
        binary = self._binary or find_etcd_binary()
        if binary is None:
            raise RuntimeError(f"etcd is not installed: {_GET_ETCD}")
        self.workdir.mkdir(parents=True, exist_ok=True)
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
        self._process = _Process(
            f"etcd {self.name} on {self.client_url}",
            argv,
            _clean_env("ETCD_"),  # ETCD_* variables would override or clash with the flags
            self.workdir / "etcd.log",
        )
        self._process.spawn(self.workdir)

    def wait_ready(self, timeout: float = 30) -> None:
        host, port = self.host, self._ports()[0]
        process = self._process
        _wait_until(f"etcd {self.name}", lambda: etcd_is_healthy(host, port), timeout, process)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout`; data and ports are kept for start()."""
        if self._process is not None:
            self._process.terminate(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, for fault tests; start() recovers from the data left."""
        if self._process is not None:
            self._process.kill()

    def cleanup(self) -> None:
        """Stop and remove the workdir with its data and log."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _ports(self) -> tuple[int, int]:
        if self.client_port is None or self.peer_port is None:
            raise RuntimeError("etcd server has no ports until start()")
        return self.client_port, self.peer_port


# -- RabbitMQ --------------------------------------------------------------


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


class RabbitServer:
    """A private RabbitMQ node with the management plugin, files under `workdir`.

    Its own node name (`roger-test-<random>@localhost`), AMQP, Erlang
    distribution and management ports on 127.0.0.1, config, enabled-plugins
    file, Erlang cookie (`HOME` is the workdir), mnesia and log folders.
    Statistics are emitted every `stats_interval_ms` and aggregated every
    second (RabbitMQ's defaults: 5 s each), so the management API shows a new
    consumer or a changed message count within about a second.

    Timings on RabbitMQ 3.10: about 7 s to start; about 6 s to stop, 5 of
    them spent by the management agent's shutdown hook, after the message
    stores have already been closed.
    """

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
        self.workdir = workdir
        self.node_name = node_name or f"roger-test-{secrets.token_hex(4)}@localhost"
        self.host = host
        self.username = username
        self.password = password
        self._scripts = scripts
        self._stats_interval_ms = stats_interval_ms
        self.amqp_port: int | None = None
        self.dist_port: int | None = None
        self.management_port: int | None = None
        self._process: _Process | None = None

    @property
    def endpoint(self) -> RabbitEndpoint:
        amqp, _, management = self._ports()
        creds = f"{_quote(self.username)}:{_quote(self.password)}"
        return RabbitEndpoint(
            amqp_url=f"amqp://{creds}@{self.host}:{amqp}/",
            management_url=f"http://{creds}@{self.host}:{management}",
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.alive

    def start(self, timeout: float = 60) -> None:
        """Start (or restart, same ports and data) and wait until AMQP and management answer."""
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the node without waiting; a no-op while it runs."""
        if self.running:
            return
        if self.amqp_port is None or self.dist_port is None or self.management_port is None:
            self.amqp_port, self.dist_port, self.management_port = free_ports(3, self.host)
        scripts = self._scripts_dir()
        env = self._write_files()
        self._process = _Process(
            f"rabbitmq {self.node_name} on {self.host}:{self.amqp_port}",
            [str(scripts / "rabbitmq-server")],
            env,
            self.workdir / "rabbitmq-server.log",
        )
        self._process.spawn(self.workdir)

    def wait_ready(self, timeout: float = 60) -> None:
        amqp, _, _ = self._ports()
        management_url = self.endpoint.management_url

        def ready() -> bool:
            return amqp_is_ready(self.host, amqp) and _management_is_ready(management_url)

        _wait_until(f"rabbitmq {self.node_name}", ready, timeout, self._process)

    def stop(self, timeout: float = 30) -> None:
        """Stop the Erlang node cleanly; data and ports are kept for start().

        SIGTERM goes to `rabbitmq-server`, whose trap passes it on to the VM,
        which shuts RabbitMQ down in order; what is left after `timeout` is killed.
        """
        if self._process is not None:
            self._process.terminate(timeout)

    def kill(self) -> None:
        """SIGKILL the node: a crash, for fault tests; durable queues survive it."""
        if self._process is not None:
            self._process.kill()

    def cleanup(self) -> None:
        """Stop and remove the workdir: mnesia, logs, config."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

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

    def _scripts_dir(self) -> Path:
        scripts = self._scripts or find_rabbitmq_scripts()
        if scripts is None:
            raise RuntimeError(f"rabbitmq-server is not installed: {_GET_RABBITMQ}")
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
            *_FAST_STATS_CONFIG,
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
        env = _clean_env("RABBITMQ_", "ERL_")
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


# The management agent aggregates what the broker reports once per the
# finest sample-retention granularity (5 s by default; whole seconds only),
# whatever collect_statistics_interval says: 1 s keeps consumer lists fresh.
_FAST_STATS_CONFIG = (
    "management.rates_mode = basic",
    "management.sample_retention_policies.global.minute = 1",
    "management.sample_retention_policies.global.hour = 60",
    "management.sample_retention_policies.global.day = 1200",
    "management.sample_retention_policies.basic.minute = 1",
    "management.sample_retention_policies.basic.hour = 60",
    "management.sample_retention_policies.detailed.10 = 1",
)


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


# -- finding servers in the order the brief fixes ---------------------------


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
        _start_or_clean(server.start, server.cleanup)
        return server.endpoint, server.cleanup
    raise RuntimeError(f"No etcd for the tests: {_GET_ETCD}")


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
        _start_or_clean(server.start, server.cleanup)
        return server.endpoint, server.cleanup
    raise RuntimeError(f"No RabbitMQ for the tests: {_GET_RABBITMQ}")


def _nothing() -> None:
    """Cleanup of a server we did not start: it is not ours to stop."""


def _start_or_clean(start: Callable[[], None], cleanup: Cleanup) -> None:
    try:
        start()
    except BaseException:
        cleanup()
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
        _wait_until("etcd container", lambda: etcd_is_healthy(host, port), timeout)
    except BaseException:
        container.stop()
        raise
    return EtcdEndpoint(f"{host}:{port}"), container.stop


_CONTAINER_RABBITMQ_CONF = "\n".join(
    [
        "collect_statistics_interval = 500",
        *_FAST_STATS_CONFIG,
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
        _wait_until(
            "rabbitmq container",
            lambda: amqp_is_ready(host, amqp) and _management_is_ready(endpoint.management_url),
            timeout,
        )
    except BaseException:
        container.stop()
        raise
    return endpoint, container.stop
