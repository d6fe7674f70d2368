"""Names of partitions, queues and RabbitMQ queues, from one place.

A partition `myapp` with a queue `default` lives in the RabbitMQ queue
`myapp-default`. Partition and queue names may not contain `-` or `.`, so no
two (partition, queue) pairs can map to the same RabbitMQ queue, and no queue
can be mistaken for a derived one (`myapp-default.buried`; `.retry.<s>`, the
retry queues of releases before the delay levels). The
namespace's own queues and exchanges start with `roger.`, which no partition
queue can.
"""

from __future__ import annotations

import hashlib
import re

from .errors import ConfigError

MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9_]+")
# Node names show up in etcd keys and logs; dots and dashes are common in hostnames.
_NODE_NAME = re.compile(r"[A-Za-z0-9_.@-]+")
_KEY = re.compile(r"[A-Za-z0-9_.@:=+-]+")
_HASHED_KEY = re.compile(r"#[0-9a-f]{32}")


def _check(kind: str, name: str, pattern: re.Pattern[str], allowed: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"{kind} name {name[:20]!r}… is longer than {MAX_NAME_LENGTH} characters")
    if not pattern.fullmatch(name):
        raise ConfigError(f"{kind} name {name!r} is not allowed: use only {allowed}")
    return name


def check_partition(name: str) -> str:
    """Return `name` if it is a valid partition name, else raise ConfigError."""
    return _check("partition", name, _NAME, "letters, digits and _")


def check_queue(name: str) -> str:
    """Return `name` if it is a valid queue name, else raise ConfigError."""
    return _check("queue", name, _NAME, "letters, digits and _")


def check_node(name: str) -> str:
    """Return `name` if it is a valid node name, else raise ConfigError."""
    return _check("node", name, _NODE_NAME, "letters, digits and _ . @ -")


def check_label(label: str) -> str:
    """Return `label` if it is a valid node label (`roger-node --label gpu`)."""
    return _check("label", label, _NODE_NAME, "letters, digits and _ . @ -")


def check_job_id(job_id: str) -> str:
    """Return `job_id` if it can be a job id (and so part of an etcd key)."""
    return _check("job id", job_id, _NODE_NAME, "letters, digits and _ . @ -")


MAX_SCHEDULE_LENGTH = 80  # its ticks' job ids add 17 characters: `.20261224T090000Z`


def check_schedule(name: str) -> str:
    """Return `name` if it is a valid schedule name (letters, digits and _)."""
    _check("schedule", name, _NAME, "letters, digits and _")
    if len(name) > MAX_SCHEDULE_LENGTH:
        raise ConfigError(f"schedule name {name[:20]!r}… is longer than {MAX_SCHEDULE_LENGTH} characters")
    return name


def key_id(key: str) -> str:
    """A job's queue or execution key as it appears in etcd keys and queue names.

    Plain keys stay readable; anything else (slashes, spaces, long keys) is
    hashed, behind a `#` no plain key can contain, so two keys never share an id.
    """
    if not isinstance(key, str) or not key:
        raise ConfigError(f"a job key must be a non-empty string, got {key!r}")
    if len(key) <= 80 and _KEY.fullmatch(key) or _HASHED_KEY.fullmatch(key):
        return key  # plain, or already an id: key_id(key_id(k)) == key_id(k)
    return "#" + hashlib.sha256(key.encode()).hexdigest()[:32]


def exec_waiting_queue_name(partition: str, key: str) -> str:
    """The RabbitMQ queue where jobs of one execution key wait their turn, in order."""
    return f"{check_partition(partition)}-execution-waiting-{key_id(key)}"


def queue_name(partition: str, queue: str) -> str:
    """The RabbitMQ queue holding the jobs of `queue` in `partition`."""
    return f"{check_partition(partition)}-{check_queue(queue)}"


def buried_queue_name(partition: str, queue: str) -> str:
    """The RabbitMQ queue keeping jobs that failed for good or cannot run."""
    return f"{queue_name(partition, queue)}.buried"


def control_queue_name(namespace: str, node: str) -> str:
    """The queue a node takes requests on (`rogerctl job running`): one per node,
    exclusive to its connection. It starts with `roger.`, which no partition
    queue can (partition names hold no `.`), and names the namespace, so
    clusters sharing one RabbitMQ never answer each other."""
    name = f"roger.{namespace.strip('/')}.control.{check_node(node)}"
    if len(name.encode()) > 255:  # an AMQP short string
        raise ConfigError(f"control queue name {name[:40]!r}… is longer than 255 bytes")
    return name


def release_queue_name(namespace: str) -> str:
    """The queue of queue-key releases a node could not do when its job ended (etcd was
    unreachable): one per namespace, consumed by every node. Starts with `roger.` like
    the control queues, so no partition queue can have its name."""
    name = f"roger.{namespace.strip('/')}.key-releases"
    if len(name.encode()) > 255:  # an AMQP short string
        raise ConfigError(f"release queue name {name[:40]!r}… is longer than 255 bytes")
    return name


def namespace_prefix(namespace: str) -> str:
    """What the names of a namespace's own queues and exchanges start with."""
    return f"roger.{namespace.strip('/')}."


def _namespaced(namespace: str, suffix: str, what: str) -> str:
    """A name of the namespace's own objects: starts with `roger.`, which no partition
    queue can (partition names hold no `.`)."""
    name = namespace_prefix(namespace) + suffix
    if len(name.encode()) > 255:  # an AMQP short string
        raise ConfigError(f"{what} name {name[:40]!r}… is longer than 255 bytes")
    return name


def delay_queue_name(namespace: str, level: int) -> str:
    """The queue of delay level `level` (`delays.py`): holds messages 2**level units, then
    dead-letters them to the exchange of the level below. Shared by every partition."""
    return _namespaced(namespace, f"delay.{level}", "delay queue")


def delay_exchange_name(namespace: str, level: int) -> str:
    """The topic exchange of delay level `level`: a message whose bit `level` is set goes
    to the level's queue, else on to the exchange of the level below."""
    return _namespaced(namespace, f"delay.{level}", "delay exchange")


def due_queue_name(namespace: str) -> str:
    """The queue of delayed messages now due: every node moves them to their target queue."""
    return _namespaced(namespace, "delay.due", "due queue")


def undeliverable_queue_name(namespace: str) -> str:
    """Where a due message goes whose target queue no longer exists (or that names none):
    kept for an operator, never dropped."""
    return _namespaced(namespace, "delay.undeliverable", "undeliverable queue")


def history_stream_name(namespace: str) -> str:
    """The RabbitMQ stream of the namespace's job history (`history.py`): one per
    namespace, appended to by every node, read by `rogerctl job show/history`."""
    return _namespaced(namespace, "history", "history stream")


def is_partition_queue(name: str) -> bool:
    """Whether `name` can be a partition queue (`<partition>-<queue>`)."""
    partition, sep, queue = name.partition("-")
    return bool(sep) and bool(_NAME.fullmatch(partition)) and bool(_NAME.fullmatch(queue))


MAX_CONCURRENCY = 10_000
MAX_REPLICAS = 10_000


def check_concurrency(queue: str, value: object) -> int:
    """A queue's concurrency if it is a whole number from 1 to MAX_CONCURRENCY."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"concurrency of queue {queue!r} must be a whole number, got {value!r}")
    if not 1 <= value <= MAX_CONCURRENCY:
        raise ConfigError(
            f"concurrency of queue {queue!r} must be between 1 and {MAX_CONCURRENCY}, got {value}"
        )
    return value


def check_replicas(partition: str, value: object) -> int:
    """A partition's `replicas` if it is a whole number from 1 to MAX_REPLICAS."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"replicas of partition {partition!r} must be a whole number, got {value!r}")
    if not 1 <= value <= MAX_REPLICAS:
        raise ConfigError(
            f"replicas of partition {partition!r} must be between 1 and {MAX_REPLICAS}, got {value}"
        )
    return value
