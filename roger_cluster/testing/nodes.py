"""Real `roger-node` processes for tests: start, signal, kill, read their logs.

Each node runs as `python -m roger_cluster.cli.node` in its own process group,
configured through the same environment variables an operator would use, with
its log in a file the test can read. The factory kills whatever it started.
A `wrapper` command runs the node under it as a container would (`unshare
--pid --fork --kill-child`: PID 1 of a pid namespace of its own); the wrapper
stays in the node's process group, so a kill takes both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class NodeProcess:
    """One roger-node subprocess."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        log_path: Path,
        args: Sequence[str] = (),
        wrapper: Sequence[str] = (),
    ) -> None:
        self.name = name
        """The node's name (`ROGER_NODE_NAME`)."""
        self.env = dict(env)
        """The environment it runs with."""
        self.log_path = log_path
        """The file its stdout and stderr go to."""
        self.args = list(args)
        """Its command-line arguments."""
        self.wrapper = list(wrapper)
        """A command it runs under (`unshare ...`), if any."""
        self.process: subprocess.Popen[bytes] | None = None
        """The running process; None before `start`."""

    def start(self) -> NodeProcess:
        """Launch the process (returns at once; see `wait_started`)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                [*self.wrapper, sys.executable, "-m", "roger_cluster.cli.node", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        """The process id (of the wrapper, if any; also the process group id)."""
        assert self.process is not None, "node not started"
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while running."""
        return None if self.process is None else self.process.poll()

    def log(self) -> str:
        """Everything the node logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def wait_started(self, timeout: float = 30.0) -> None:
        """Wait for the node's "started" log line; fail with its log if it exited."""
        deadline = time.monotonic() + timeout
        while f"node {self.name} started" not in self.log():
            if self.returncode is not None:
                raise AssertionError(f"node {self.name} exited with {self.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.name} not started in {timeout}s:\n{self.log()}")
            await asyncio.sleep(0.05)

    def signal(self, sig: int) -> None:
        """Send `sig` to the node process."""
        if self.returncode is None:
            os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the node and its wrapper (SIGSTOP / SIGCONT a wrapped node)."""
        if self.returncode is None:
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would; return once it is gone."""
        if self.process is not None and self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(10)
            # A wrapped node is not our child: wait for it too (it is reaped by init).
            deadline = time.monotonic() + 10
            with contextlib.suppress(ProcessLookupError):
                while self.wrapper and time.monotonic() < deadline:
                    os.killpg(self.pid, 0)
                    time.sleep(0.01)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end; returns its exit code."""
        deadline = time.monotonic() + timeout
        while (code := self.returncode) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.name} still running after {timeout}s")
            await asyncio.sleep(0.05)
        return code


class NodeFactory:
    """Starts nodes against one cluster (servers + namespace); kills them all at the end."""

    def __init__(
        self,
        amqp_url: str,
        etcd: str,
        namespace: str,
        workdir: Path,
        jobs: Sequence[str] = ("roger_cluster.demo",),
        extra_env: Mapping[str, str] | None = None,
        management_url: str = "",
    ) -> None:
        self.amqp_url = amqp_url
        """The RabbitMQ URL its nodes use."""
        self.etcd = etcd
        """The etcd endpoints its nodes use."""
        self.namespace = namespace
        """The etcd namespace of this cluster (the test's own)."""
        self.workdir = workdir
        """Where the nodes' logs go."""
        self.jobs = list(jobs)
        """The job modules nodes load unless told otherwise (`ROGER_JOBS`)."""
        self.extra_env = dict(extra_env or {})
        """Variables added to every node's environment."""
        self.management_url = management_url
        """The RabbitMQ management API, for rogerctl."""
        self.nodes: list[NodeProcess] = []
        """Every node it started, stopped at the end of the test."""
        self._count = 0

    def env(self, name: str, **overrides: str) -> dict[str, str]:
        """The environment a node of this cluster runs with."""
        env = dict(os.environ)
        python_path = [str(Path.cwd()), *filter(None, [env.get("PYTHONPATH")])]
        env.update(
            ROGER_AMQP_URL=self.amqp_url,
            ROGER_ETCD=self.etcd,
            ROGER_NAMESPACE=self.namespace,
            ROGER_MANAGEMENT_URL=self.management_url,
            ROGER_NODE_NAME=name,
            ROGER_JOBS=",".join(self.jobs),
            ROGER_LEASE_TTL="3",
            ROGER_SHUTDOWN_TIMEOUT="10",
            PYTHONPATH=os.pathsep.join(python_path),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def spawn(
        self,
        name: str | None = None,
        args: Sequence[str] = (),
        jobs: str | None = None,
        wrapper: Sequence[str] = (),
        **env: str,
    ) -> NodeProcess:
        """Launch a node without waiting for it; `jobs` overrides the allowed modules,
        `wrapper` is a command to run it under (`unshare ...`)."""
        self._count += 1
        name = name or f"node{self._count}"
        if jobs is not None:
            env["ROGER_JOBS"] = jobs
        log_path = self.workdir / f"{name}-{self._count}.log"
        node = NodeProcess(name, self.env(name, **env), log_path, args, wrapper).start()
        self.nodes.append(node)
        return node

    async def start(
        self,
        name: str | None = None,
        args: Sequence[str] = (),
        jobs: str | None = None,
        wrapper: Sequence[str] = (),
        **env: str,
    ) -> NodeProcess:
        """Launch a node and wait until it has joined and attached its consumers."""
        node = self.spawn(name, args, jobs, wrapper, **env)
        await node.wait_started()
        return node

    async def start_many(self, count: int, jobs: str | None = None, **env: str) -> list[NodeProcess]:
        """Launch `count` nodes in parallel and wait for all."""
        nodes = [self.spawn(jobs=jobs, **env) for _ in range(count)]
        await asyncio.gather(*(n.wait_started() for n in nodes))
        return nodes

    def cleanup(self) -> None:
        """Kill every node this factory started."""
        for node in self.nodes:
            node.kill()
