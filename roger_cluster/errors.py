"""The exception tree of roger_cluster: one family under `RogerError`.

Library exceptions (aio-pika, gRPC/aetcd, aiohttp) are turned into these at the
border (`broker/`, `cluster/etcd.py`, `management.py`), so callers catch one family
and read one message. One subclass lives beside the protocol it belongs to:
`RemoteError`, a node's error answer to a control request (`control/wire.py`).
"""

from __future__ import annotations


class RogerError(Exception):
    """Base class of every error raised by roger_cluster."""


class ConfigError(RogerError, ValueError):
    """A configuration value or a name is not allowed."""


class DecodeError(RogerError):
    """A message body is not a valid roger_cluster job message."""


class JobError(RogerError):
    """A job cannot be created, enqueued or run as asked."""


class UnknownJob(JobError):
    """The job class is not one this node was told to load (`--jobs`)."""


class DuplicateJob(JobError):
    """A job with the same queue key is already queued."""


class JobTimeout(JobError):
    """A job ran past its `max_execution_time`."""


class ClientClosed(RogerError):
    """The client was closed: make a new one (a `SyncClient` after `close()`)."""


class BrokerError(RogerError):
    """RabbitMQ refused an operation."""


class BrokerConnectionError(BrokerError):
    """RabbitMQ cannot be reached."""


class UnroutableJob(BrokerError):
    """No queue would take the job: the partition or the queue does not exist."""


class ManagementError(BrokerError):
    """RabbitMQ's management HTTP API could not be reached or refused a request."""


class ClusterError(RogerError):
    """etcd refused an operation, or the cluster state does not allow it."""


class ClusterConnectionError(ClusterError):
    """etcd cannot be reached."""


class DuplicateNode(ClusterError):
    """A live node already holds this node name."""


class UnknownPartition(ClusterError):
    """The partition does not exist in the partition map."""


class UnknownQueue(UnknownPartition):
    """The partition has no such queue: not in its map entry, or not in RabbitMQ."""


class UnknownSchedule(ClusterError):
    """No schedule of that name is stored."""


class Compacted(ClusterError):
    """The revision asked for was compacted away (or etcd is behind it): read whole, then watch again."""


class DrainTimeout(ClusterError):
    """Some live nodes still run jobs of the draining partition after the timeout."""


class DrainAbandoned(ClusterError):
    """The partition was started again while it was draining."""


class InvalidEntry(ConfigError):
    """A value stored in etcd does not decode; nodes ignore it (`rogerctl doctor` lists them)."""


class HttpError(RogerError):
    """A request to our HTTP server (probes, dashboard) answered with `status` and a JSON
    `{"error": message}`: raised by the handlers, turned into the response by the server."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
