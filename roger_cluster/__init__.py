"""roger_cluster: a clustered job runtime for Python on RabbitMQ and etcd."""

from __future__ import annotations

# First, and on its own: a module imported below may still take the version from the
# package (`from .. import __version__`) rather than from `version.py`.
from .version import __version__

# isort: split
from .client import Client
from .config import AmqpConfig, EtcdConfig, NodeConfig
from .errors import (
    BrokerConnectionError,
    BrokerError,
    ClientClosed,
    ClusterConnectionError,
    ClusterError,
    ConfigError,
    DecodeError,
    DrainAbandoned,
    DrainTimeout,
    DuplicateJob,
    DuplicateNode,
    InvalidEntry,
    JobError,
    JobTimeout,
    ManagementError,
    RogerError,
    UnknownJob,
    UnknownPartition,
    UnknownQueue,
    UnknownSchedule,
    UnroutableJob,
)
from .job import Job, JobRegistry
from .node import Node
from .schedules import Schedule
from .sync_client import SyncClient

__all__ = [
    # the API
    "Client",
    "Job",
    "JobRegistry",
    "Node",
    "Schedule",
    "SyncClient",
    # configuration
    "AmqpConfig",
    "EtcdConfig",
    "NodeConfig",
    # errors
    "RogerError",
    "ConfigError",
    "ClientClosed",
    "InvalidEntry",
    "DecodeError",
    "JobError",
    "UnknownJob",
    "DuplicateJob",
    "JobTimeout",
    "BrokerError",
    "BrokerConnectionError",
    "UnroutableJob",
    "ManagementError",
    "ClusterError",
    "ClusterConnectionError",
    "DuplicateNode",
    "UnknownPartition",
    "UnknownQueue",
    "UnknownSchedule",
    "DrainTimeout",
    "DrainAbandoned",
    "__version__",
]
