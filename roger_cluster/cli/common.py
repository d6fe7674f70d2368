"""Flags shared by roger-node and rogerctl, with their environment fallbacks, and
their exit codes: one table (`Exit`), mapped once from the RogerError tree."""

from __future__ import annotations

import argparse
import sys
import typing
from enum import IntEnum

from .. import environment
from ..config import (
    DEFAULT_AMQP_URL,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_ETCD,
    DEFAULT_NAMESPACE,
    AmqpConfig,
    EtcdConfig,
    TlsFiles,
)
from ..errors import (
    BrokerConnectionError,
    ClusterConnectionError,
    ConfigError,
    DecodeError,
    DuplicateJob,
    DuplicateNode,
    InvalidEntry,
    JobError,
    ManagementError,
    RogerError,
    UnknownPartition,
    UnknownQueue,
    UnknownSchedule,
    UnroutableJob,
)
from . import logs, tree
from .color import paint


class Exit(IntEnum):
    """The exit codes of rogerctl and roger-node: the one table, also in docs/cli.md."""

    OK = 0
    FAILED = 1  # a server cannot be reached or refused the request; a wait ran out (drain --timeout)
    USAGE = 2  # bad usage or bad input (a name, JSON, a job class that is not there): nothing changed
    CONFLICT = 3  # a duplicate: a queue key another job holds; a node name a live node holds
    NOT_FOUND = 4  # no such partition, queue (in the map, or in RabbitMQ) or schedule
    INVALID_STATE = 5  # an entry in etcd does not decode (nodes ignore it; `rogerctl doctor`)
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


# The RogerError tree -> exit codes; the first class that matches wins (subclasses first).
ERROR_EXITS: tuple[tuple[type[RogerError] | tuple[type[RogerError], ...], Exit], ...] = (
    (InvalidEntry, Exit.INVALID_STATE),
    ((DuplicateJob, DuplicateNode), Exit.CONFLICT),
    ((UnknownPartition, UnknownSchedule, UnroutableJob), Exit.NOT_FOUND),
    ((ConfigError, JobError, DecodeError), Exit.USAGE),
)


def exit_code(error: RogerError) -> Exit:
    """The exit code for an error; FAILED for servers unreachable or refusing, and the rest."""
    for kinds, code in ERROR_EXITS:
        if isinstance(error, kinds):
            return code
    return Exit.FAILED


EXIT_OK = Exit.OK
EXIT_UNREACHABLE = Exit.FAILED
EXIT_USAGE = Exit.USAGE
EXIT_CONFLICT = Exit.CONFLICT
EXIT_NOT_FOUND = Exit.NOT_FOUND


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors name where the fix is: the command's
    own `--help`. Subcommands get the same class (argparse's default)."""

    def error(self, message: str) -> typing.NoReturn:
        """Print the usage and the error, with the --help to read, and exit 2."""
        super().error(f"{message} (`{self.prog} --help` lists what it takes)")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; values from the environment must pass the same
    choices as flags (a bad one exits 2, naming the flag and its environment variable)."""
    args = parser.parse_args(argv)
    for problem in tree.invalid_choices(parser, args):
        parser.error(f"{problem}; set by an environment variable (see --help)")
    return args


def env(name: str, default: str) -> str:
    """The environment variable `name`, or `default` if unset or empty."""
    return environment.get(name, default)


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """--amqp-url, --etcd, --namespace."""
    parser.add_argument(
        "--amqp-url",
        default=None,
        help="RabbitMQ URL, or several comma-separated for a cluster (env ROGER_AMQP_URL, or a"
        " file named by ROGER_AMQP_URL_FILE, keeping the password off the command line;"
        f" default {DEFAULT_AMQP_URL})",
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
    add_security_flags(parser)
    parser.add_argument(
        "--delivery-limit",
        type=int,
        default=env("ROGER_DELIVERY_LIMIT", str(DEFAULT_DELIVERY_LIMIT)),
        help="quorum queues: deliveries without an ack before a job is buried as poison; 0 = none."
        " Give every node and client the same value (env ROGER_DELIVERY_LIMIT; default %(default)s)",
    )


def add_security_flags(parser: argparse.ArgumentParser) -> None:
    """TLS files for RabbitMQ and etcd, and the etcd user. Secrets come only from
    the environment or files, never from flags (they would show in `ps`)."""
    for name, what in (("amqp", "RabbitMQ (amqps:// URLs)"), ("etcd", "etcd (https:// endpoints)")):
        upper = name.upper()
        parser.add_argument(
            f"--{name}-ca",
            default=env(f"ROGER_{upper}_CA", "") or None,
            help=f"CA file to verify {what} (env ROGER_{upper}_CA)",
        )
        parser.add_argument(
            f"--{name}-cert",
            default=env(f"ROGER_{upper}_CERT", "") or None,
            help=f"client certificate for {what} (env ROGER_{upper}_CERT)",
        )
        parser.add_argument(
            f"--{name}-key",
            default=env(f"ROGER_{upper}_KEY", "") or None,
            help=f"client key for {what} (env ROGER_{upper}_KEY)",
        )
    parser.add_argument(
        "--etcd-user",
        default=env("ROGER_ETCD_USER", "") or None,
        help="etcd user (env ROGER_ETCD_USER; its password from env"
        " ROGER_ETCD_PASSWORD or the file named by ROGER_ETCD_PASSWORD_FILE)",
    )


def secret(name: str) -> str | None:
    """A secret from env `name`, or from the file named by env `name`_FILE (`environment.secret`)."""
    return environment.secret(name)


def amqp_url(args: argparse.Namespace) -> str:
    """--amqp-url, else ROGER_AMQP_URL, else the file ROGER_AMQP_URL_FILE names, else the default."""
    return amqp_config(args).url


def tls_files(args: argparse.Namespace, name: str) -> TlsFiles | None:
    """The TLS files given for `name` ("amqp" or "etcd"), or None."""
    return environment.tls_files(*(getattr(args, f"{name}_{part}") for part in ("ca", "cert", "key")))


def amqp_config(args: argparse.Namespace) -> AmqpConfig:
    """The AmqpConfig the flags describe (built as `Client.from_env` builds it: `environment.py`)."""
    return environment.amqp_config(
        url=args.amqp_url,
        queue_type=args.queue_type,
        delivery_limit=args.delivery_limit,
        tls=tls_files(args, "amqp"),
    )


def etcd_config(args: argparse.Namespace) -> EtcdConfig:
    """The EtcdConfig the flags describe (built as `Client.from_env` builds it: `environment.py`)."""
    return environment.etcd_config(
        endpoints=args.etcd, namespace=args.namespace, tls=tls_files(args, "etcd"), user=args.etcd_user
    )


def _fixes(namespace: str) -> tuple[tuple[type[RogerError], str], ...]:
    """What to do about each kind of error (subclasses first): the flag, variable
    or command that fixes it, for the one-line error message."""
    ns = f"namespace {namespace!r} (--namespace, ROGER_NAMESPACE)"
    return (
        (
            InvalidEntry,
            "nodes ignore it; `rogerctl partition stop` removes it, `rogerctl doctor` lists all such",
        ),
        (ClusterConnectionError, "is etcd running there? Point --etcd or ROGER_ETCD at it"),
        (
            BrokerConnectionError,
            "is RabbitMQ running there, with that user and password?"
            " Point --amqp-url or ROGER_AMQP_URL at it",
        ),
        (
            ManagementError,
            "enable the plugin (`rabbitmq-plugins enable rabbitmq_management`) or point"
            " --management-url or ROGER_MANAGEMENT_URL at it",
        ),
        (UnknownQueue, f"`rogerctl partition list` shows the queues of each partition in {ns}"),
        (
            UnknownPartition,
            f"`rogerctl partition list` shows the partitions in {ns};"
            " `rogerctl partition start NAME QUEUE=N` starts one",
        ),
        (UnknownSchedule, f"`rogerctl schedule list` shows the schedules in {ns}"),
        (UnroutableJob, "start its partition with that queue: `rogerctl partition start NAME QUEUE=N`"),
        (DuplicateJob, "wait until that job has left the queue, or `rogerctl job cancel` it"),
    )


def explain(error: RogerError, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The error's message and what to do about it, for the one line a CLI prints."""
    message = str(error)
    for kind, fix in _fixes(namespace):
        if isinstance(error, kind):
            return f"{message} ({fix})" if fix not in message else message
    return message


def fail(program: str, code: int, message: str, color: bool = False) -> int:
    """Print a one-line error for the program (red if `color`) and return its exit code."""
    print(paint(f"{program}: {' '.join(message.split())}", "error", color), file=sys.stderr)
    return code


def setup_logging(level: str) -> None:
    """Plain text logs on stderr (rogerctl)."""
    logs.setup_logging(level)


def split_list(items: list[str] | None) -> list[str]:
    """Values of a repeatable, comma-separated flag (`--label a,b --label c`), blanks dropped."""
    return [part.strip() for item in items or () for part in item.split(",") if part.strip()]
