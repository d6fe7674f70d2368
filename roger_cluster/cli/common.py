"""Flags shared by roger-node and rogerctl, with their environment fallbacks."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..config import DEFAULT_AMQP_URL, DEFAULT_DELIVERY_LIMIT, DEFAULT_ETCD, DEFAULT_NAMESPACE

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_NOT_FOUND = 4


def env(name: str, default: str) -> str:
    """The environment variable `name`, or `default` if unset or empty."""
    return os.environ.get(name) or default


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """--amqp-url, --etcd, --namespace."""
    parser.add_argument(
        "--amqp-url",
        default=env("ROGER_AMQP_URL", DEFAULT_AMQP_URL),
        help="RabbitMQ URL (env ROGER_AMQP_URL; default %(default)s)",
    )
    parser.add_argument(
        "--etcd",
        default=env("ROGER_ETCD", DEFAULT_ETCD),
        help="etcd endpoints, host:port[,host:port...] (env ROGER_ETCD; default %(default)s)",
    )
    parser.add_argument(
        "--namespace",
        default=env("ROGER_NAMESPACE", DEFAULT_NAMESPACE),
        help="etcd key prefix of this cluster (env ROGER_NAMESPACE; default %(default)s)",
    )
    parser.add_argument(
        "--queue-type",
        choices=("quorum", "classic"),
        default=env("ROGER_QUEUE_TYPE", "quorum"),
        help="type of the RabbitMQ queues declared (env ROGER_QUEUE_TYPE; default %(default)s)",
    )
    parser.add_argument(
        "--delivery-limit",
        type=int,
        default=env("ROGER_DELIVERY_LIMIT", str(DEFAULT_DELIVERY_LIMIT)),
        help="quorum queues: deliveries without an ack before a job is buried as poison; 0 = none."
        " Give every node and client the same value (env ROGER_DELIVERY_LIMIT; default %(default)s)",
    )


def fail(program: str, code: int, message: str) -> int:
    """Print a one-line error for the program and return its exit code."""
    print(f"{program}: {message}", file=sys.stderr)
    return code


def setup_logging(level: str) -> None:
    """Plain text logs on stderr."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiormq logs every broken connection at length; our own messages say it once.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika").setLevel(logging.CRITICAL)


def split_list(items: list[str] | None) -> list[str]:
    """Values of a repeatable, comma-separated flag (`--label a,b --label c`), blanks dropped."""
    return [part.strip() for item in items or () for part in item.split(",") if part.strip()]
