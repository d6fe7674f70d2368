"""roger-node: run one node of the cluster until SIGTERM or SIGINT.

Exit codes: 0 after a graceful shutdown; 1 when RabbitMQ or etcd cannot be
reached at start, the node crashed, or a second signal stopped it at once; 2 for bad flags or job modules that
cannot be imported; 3 when a live node already has this name, or another instance
took it over while this one was frozen or cut off from etcd (it then stops gracefully).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import threading

from ..config import (
    DEFAULT_HISTORY_SEGMENT_BYTES,
    DEFAULT_LEASE_TTL,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_WAITING_IDLE,
    HistoryConfig,
    NodeConfig,
    parse_http,
)
from ..delays import parse_span
from ..errors import ConfigError, DuplicateNode, RogerError
from ..names import check_partition, check_queue
from ..node import Node
from ..retry import DEFAULT_LEVELS as DEFAULT_RETRY_LEVELS
from ..retry import parse_levels
from . import logs
from .common import (
    EXIT_CONFLICT,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Parser,
    add_connection_flags,
    amqp_config,
    env,
    etcd_config,
    explain,
    fail,
    parse,
    split_list,
)

log = logging.getLogger("roger_cluster.node")


def parser() -> argparse.ArgumentParser:
    """The roger-node argument parser."""
    p = Parser(
        prog="roger-node",
        description="Run a roger_cluster node: join the cluster and run jobs of every partition.",
        epilog="Exit codes: 0 graceful stop, 1 server unreachable or crash, 2 bad usage, 3 name taken.",
    )
    add_connection_flags(p)
    p.add_argument(
        "--name",
        default=env("ROGER_NODE_NAME", socket.gethostname()),
        help="node name, unique in the cluster (env ROGER_NODE_NAME; default: the host name)",
    )
    p.add_argument(
        "--jobs",
        default=env("ROGER_JOBS", ""),
        help="comma-separated modules whose Job classes this node may run (env ROGER_JOBS)",
    )
    p.add_argument(
        "--lease-ttl",
        type=int,
        default=env("ROGER_LEASE_TTL", str(DEFAULT_LEASE_TTL)),
        help="seconds a silent node stays registered (env ROGER_LEASE_TTL; default %(default)s)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=env("ROGER_SHUTDOWN_TIMEOUT", str(DEFAULT_SHUTDOWN_TIMEOUT)),
        help="seconds running jobs get to finish on SIGTERM (env ROGER_SHUTDOWN_TIMEOUT;"
        " default %(default)s)",
    )
    p.add_argument(
        "--waiting-queue-idle",
        type=float,
        default=env("ROGER_WAITING_QUEUE_IDLE", str(int(DEFAULT_WAITING_IDLE))),
        metavar="SECONDS",
        help="seconds an execution key's waiting queue stays after its last job before it is"
        " deleted (env ROGER_WAITING_QUEUE_IDLE; default %(default)s)",
    )
    p.add_argument(
        "--retry-levels",
        default=env("ROGER_RETRY_LEVELS", ",".join(map(str, DEFAULT_RETRY_LEVELS))),
        help="seconds between attempts of a retryable job, comma-separated"
        " (env ROGER_RETRY_LEVELS; default %(default)s)",
    )
    p.add_argument(
        "--callbacks",
        default=env("ROGER_CALLBACKS", ""),
        help="module:object whose before_run, after_run, on_error, on_cancel, on_buried"
        " hooks the node calls (env ROGER_CALLBACKS)",
    )
    p.add_argument(
        "--label",
        dest="labels",
        action="append",
        metavar="LABEL[,LABEL...]",
        help="a label of this node, for partitions started with --labels"
        " (repeatable or comma-separated; env ROGER_LABELS)",
    )
    p.add_argument(
        "--concurrency",
        action="append",
        metavar="PARTITION.QUEUE=N[,...]",
        help="this node's own concurrency for a queue, instead of the partition's"
        " (repeatable or comma-separated; env ROGER_CONCURRENCY)",
    )
    p.add_argument(
        "--http",
        default=env("ROGER_HTTP", ""),
        metavar="HOST:PORT",
        help="serve /healthz, /readyz and /metrics (Prometheus) here (env ROGER_HTTP; default: off)",
    )
    p.add_argument(
        "--no-history",
        dest="history",
        action="store_false",
        default=env("ROGER_HISTORY", "on").lower() not in ("off", "0", "false", "no"),
        help="record no job history (env ROGER_HISTORY=off; default: on, see docs/history.md)",
    )
    p.add_argument(
        "--history-max-age",
        default=env("ROGER_HISTORY_MAX_AGE", "7d"),
        metavar="DURATION",
        help="how long the namespace's history stream keeps job events: 12h, 7d, 30d"
        " (env ROGER_HISTORY_MAX_AGE; default %(default)s)",
    )
    p.add_argument(
        "--history-max-bytes",
        default=env("ROGER_HISTORY_MAX_BYTES", "1GiB"),
        metavar="SIZE",
        help="how big the history stream may grow before its oldest events go: 500MB, 1GiB, 10GB"
        " (env ROGER_HISTORY_MAX_BYTES; default %(default)s)",
    )
    p.add_argument(
        "--log-format",
        default=env("ROGER_LOG_FORMAT", "text"),
        choices=("text", "json"),
        help="text, or one JSON object per line (env ROGER_LOG_FORMAT; default %(default)s)",
    )
    p.add_argument(
        "--log-level",
        default=env("ROGER_LOG_LEVEL", "info"),
        choices=("debug", "info", "warning", "error"),
        help="log level (env ROGER_LOG_LEVEL; default %(default)s)",
    )
    return p


def parse_concurrency(items: list[str]) -> dict[tuple[str, str], int]:
    """`myapp.default=3` -> {("myapp", "default"): 3}; ConfigError if malformed."""
    overrides: dict[tuple[str, str], int] = {}
    for item in items:
        target, sep, value = item.partition("=")
        partition, dot, queue = target.partition(".")
        if not sep or not dot:
            raise ConfigError(f"--concurrency {item!r} must look like PARTITION.QUEUE=N (myapp.default=3)")
        queue_id = (check_partition(partition), check_queue(queue))
        if queue_id in overrides:
            raise ConfigError(f"--concurrency of {target} is given twice")
        try:
            overrides[queue_id] = int(value)
        except ValueError:
            raise ConfigError(f"--concurrency of {target} must be a whole number, got {value!r}") from None
    return overrides


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
               "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}  # fmt: skip


def parse_size(text: str) -> int:
    """`500MB`, `1GiB`, `1048576` -> bytes; ConfigError if malformed."""
    number = text.strip().rstrip("bBiIkKmMgGtT")
    unit = text.strip()[len(number) :].lower()
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _SIZE_UNITS or value <= 0:
        raise ConfigError(
            f"size {text!r} is not understood: write a number and a unit, such as 500MB or 1GiB"
        )
    return int(value * _SIZE_UNITS[unit])


def history_config(args: argparse.Namespace) -> HistoryConfig:
    """The job history settings from the flags (docs/history.md)."""
    max_bytes = parse_size(args.history_max_bytes)
    return HistoryConfig(
        enabled=args.history,
        max_age=int(parse_span(args.history_max_age)),
        max_bytes=max_bytes,
        segment_bytes=min(DEFAULT_HISTORY_SEGMENT_BYTES, max(1024, max_bytes // 8)),
    )


def build_config(args: argparse.Namespace) -> NodeConfig:
    """NodeConfig from parsed flags; ConfigError if a value is not allowed."""
    jobs = tuple(m.strip() for m in args.jobs.split(",") if m.strip())
    labels = split_list(args.labels if args.labels is not None else [env("ROGER_LABELS", "")])
    concurrency = args.concurrency if args.concurrency is not None else [env("ROGER_CONCURRENCY", "")]
    return NodeConfig(
        amqp=amqp_config(args),
        etcd=etcd_config(args),
        name=args.name,
        jobs=jobs,
        lease_ttl=args.lease_ttl,
        shutdown_timeout=args.shutdown_timeout,
        waiting_idle=args.waiting_queue_idle,
        retry_levels=parse_levels(args.retry_levels),
        callbacks=args.callbacks or None,
        labels=tuple(labels),
        concurrency=parse_concurrency(split_list(concurrency)),
        http=parse_http(args.http),
        history=history_config(args),
    )


async def run(config: NodeConfig) -> int:
    """Start a node; on the first signal stop it gracefully, on a second at once.

    Raises DuplicateNode (after the graceful stop) if the node lost its name.
    """
    signals = asyncio.Queue[int]()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    node = Node(config)
    await node.start()
    first = asyncio.create_task(signals.get())
    crashed = asyncio.create_task(node.crashed.wait())
    await asyncio.wait({first, crashed}, return_when=asyncio.FIRST_COMPLETED)
    crashed.cancel()
    log.info("node %s shutting down (a second SIGTERM or SIGINT stops at once)", config.name)
    stopping = asyncio.create_task(node.stop())
    second = asyncio.create_task(signals.get())
    await asyncio.wait({stopping, second}, return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)
        await node.abort()
        return EXIT_UNREACHABLE
    second.cancel()
    if isinstance(node.failure, DuplicateNode):
        raise node.failure
    return EXIT_UNREACHABLE if node.crashed.is_set() else EXIT_OK


def exit_now_if_jobs_linger(code: int) -> int:
    """Leave even if a stopped sync job's thread still runs (Python would wait for it)."""
    lingering = [t for t in threading.enumerate() if t.name.startswith("roger-job") and t.is_alive()]
    if lingering:
        log.warning("%d job thread(s) still running; exiting without them", len(lingering))
        logging.shutdown()
        os._exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of roger-node."""
    try:
        args = parse(parser(), argv)
        logs.setup_logging(args.log_level, args.log_format, node=args.name)
        config = build_config(args)
        return exit_now_if_jobs_linger(asyncio.run(run(config)))
    except ConfigError as e:
        return fail("roger-node", EXIT_USAGE, explain(e))
    except DuplicateNode as e:
        return fail("roger-node", EXIT_CONFLICT, explain(e))
    except RogerError as e:
        return fail("roger-node", EXIT_UNREACHABLE, explain(e))


if __name__ == "__main__":
    sys.exit(main())
