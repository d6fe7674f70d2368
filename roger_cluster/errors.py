"""The whole exception tree of roger_cluster.

Library exceptions (aio-pika, gRPC/aetcd) are turned into these at the border
(`broker.py`, `cluster/`), so callers catch one family and read one message.
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


class BrokerError(RogerError):
    """RabbitMQ refused an operation."""


class BrokerConnectionError(BrokerError):
    """RabbitMQ cannot be reached."""


class UnroutableJob(BrokerError):
    """No queue would take the job: the partition or the queue does not exist."""


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


class InvalidEntry(ConfigError):
    """A value stored in etcd does not decode; nodes ignore it (`rogerctl doctor` lists them)."""
