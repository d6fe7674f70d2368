"""Names of partitions, queues and RabbitMQ queues, from one place.

A partition `myapp` with a queue `default` lives in the RabbitMQ queue
`myapp-default`. Partition and queue names may not contain `-` or `.`, so no
two (partition, queue) pairs can map to the same RabbitMQ queue, and no queue
can be mistaken for a derived one (`myapp-default.buried`, `.retry.<s>`).
"""

from __future__ import annotations

import re

from .errors import ConfigError

MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9_]+")
# Node names show up in etcd keys and logs; dots and dashes are common in hostnames.
_NODE_NAME = re.compile(r"[A-Za-z0-9_.@-]+")


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


def check_job_id(job_id: str) -> str:
    """Return `job_id` if it can be a job id (and so part of an etcd key)."""
    return _check("job id", job_id, _NODE_NAME, "letters, digits and _ . @ -")


def queue_name(partition: str, queue: str) -> str:
    """The RabbitMQ queue holding the jobs of `queue` in `partition`."""
    return f"{check_partition(partition)}-{check_queue(queue)}"


def buried_queue_name(partition: str, queue: str) -> str:
    """The RabbitMQ queue keeping jobs that failed for good or cannot run."""
    return f"{queue_name(partition, queue)}.buried"


def retry_queue_name(partition: str, queue: str, delay: int) -> str:
    """The RabbitMQ queue holding jobs `delay` seconds before their next attempt."""
    return f"{queue_name(partition, queue)}.retry.{delay}"
