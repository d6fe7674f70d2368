"""Private server processes and the one lifecycle etcd and RabbitMQ share.

Why it exists: a private server (see `discovery.py` for when one is used) must
never outlive the test run and must fail fast, with its log, when it cannot
start. `ServerProcess` runs one in a process group of its own, so a kill
takes whatever it forked; `LocalServer` is the lifecycle on top of it (start,
wait until ready, stop, kill, restart on the same ports and data, clean up),
written once: `EtcdServer` and `RabbitServer` only say which ports they need,
what to run and when it is ready.

Invariants this module protects:

- No process outlives the run: every server runs in a process group of its
  own, killed as a whole by `stop`/`kill`/`cleanup`, and by an atexit hook as
  a fallback when a test run forgets.
- Every wait is bounded by a timeout, and a server that dies while starting
  fails at once with the tail of its log.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

__all__ = ["LocalServer", "ServerProcess", "clean_env", "running", "start_all", "wait_until"]

_live: set[ServerProcess] = set()
_atexit_registered = False


def _kill_leftovers() -> None:
    """atexit fallback: SIGKILL every server a test run forgot to stop."""
    for process in list(_live):
        process.kill()


class ServerProcess:
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

    @property
    def pid(self) -> int | None:
        """The leader's process id (also its process group's), once spawned."""
        return None if self._popen is None else self._popen.pid

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


def wait_until(
    what: str, ready: Callable[[], bool], timeout: float, process: ServerProcess | None = None
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


def clean_env(*prefixes: str) -> dict[str, str]:
    """Our environment without variables that would reconfigure the server."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


class LocalServer(abc.ABC):
    """A private server owning `workdir`: start, stop, kill and restart it there.

    Ports are chosen at the first start and kept, as are the files under
    `workdir`, so a stopped or killed server comes back where clients expect
    it. A subclass says what its ports are (`_assign_ports`), what to run
    (`_command`) and when it is ready (`_is_ready`).
    """

    start_timeout: ClassVar[float] = 30
    stop_timeout: ClassVar[float] = 10
    log_name: ClassVar[str] = "server.log"

    def __init__(self, workdir: Path, host: str) -> None:
        self.workdir = workdir
        self.host = host
        self._process: ServerProcess | None = None

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """What the server is called in errors: kind and name."""

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where clients reach it, for the log."""

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.alive

    @property
    def pid(self) -> int | None:
        """The server's process id (its process group's too), once started."""
        return None if self._process is None else self._process.pid

    def start(self, timeout: float | None = None) -> None:
        """Start (or restart, same ports and data) and wait until ready."""
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting; a no-op while it runs."""
        if self.running:
            return
        self._assign_ports()
        argv, env = self._command()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._process = ServerProcess(
            f"{self.label} on {self.address}", argv, env, self.workdir / self.log_name
        )
        self._process.spawn(self.workdir)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the server answers as a client needs it to (see `probes.py`)."""
        limit = self.start_timeout if timeout is None else timeout
        wait_until(self.label, self._is_ready, limit, self._process)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL after `timeout`; data and ports are kept for start()."""
        if self._process is not None:
            self._process.terminate(self.stop_timeout if timeout is None else timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, for fault tests; start() recovers from the data left."""
        if self._process is not None:
            self._process.kill()

    def cleanup(self) -> None:
        """Stop and remove the workdir with its data and logs."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @abc.abstractmethod
    def _assign_ports(self) -> None:
        """Choose free ports for those not chosen yet (kept across restarts)."""

    @abc.abstractmethod
    def _command(self) -> tuple[list[str], dict[str, str]]:
        """The argv and environment to start the server with; may write its config."""

    @abc.abstractmethod
    def _is_ready(self) -> bool:
        """Whether the server answers its protocol's readiness probe now."""


S = TypeVar("S", bound=LocalServer)


def start_all(servers: Sequence[LocalServer]) -> None:
    """Spawn every server, then wait for each: members of a cluster start together."""
    for server in servers:
        server.spawn()
    for server in servers:
        server.wait_ready()


@contextlib.contextmanager
def running(*servers: S) -> Iterator[list[S]]:
    """Start `servers` together; clean every one up on the way out, even if a start failed."""
    try:
        start_all(servers)
        yield list(servers)
    finally:
        for server in servers:
            server.cleanup()
