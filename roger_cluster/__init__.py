"""roger_cluster: a clustered job runtime for Python on RabbitMQ and etcd.

Everything an application needs is importable from here: `Job` and `Client`
to write and enqueue jobs, the configuration values, the values the client
returns, and the exception tree (every error is a `RogerError`). The test
kit is `roger_cluster.testing`; the guide is docs/index.md.
"""

from __future__ import annotations

# First, and on its own: a module imported below may still take the version from the
# package (`from .. import __version__`) rather than from `version.py`.
from .version import __version__

# isort: split
from . import delays as _delays
from .client import Client, Enqueuing
from .cluster.audit import Finding
from .cluster.drain import DrainProgress
from .cluster.membership import NodeInfo
from .cluster.partitions import PartitionSpec
from .codec import JobMessage
from .config import AmqpConfig, EtcdConfig, HistoryConfig, NodeConfig, TlsFiles
from .control.client import RunningJobs, UnreachableNode
from .control.wire import RemoteError, RunningJob
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
from .history import JobEvent, JobStory
from .job import Job, JobContext, JobRegistry
from .management import QueueRates
from .node import Node
from .overview import NodeConsumer, PartitionInfo, QueueInfo
from .queue_contents import BuriedJob, QueuedJob
from .schedule_admin import ScheduleInfo
from .scheduled import Scheduled, ScheduledJob
from .schedules import Schedule
from .sync_client import SyncClient

Delay = _delays.Delay
"""A delay for `Client.enqueue(..., delay=)`: seconds, or a `datetime.timedelta`."""

__all__ = [
    # the API
    "Client",
    "Enqueuing",
    "Job",
    "JobContext",
    "JobRegistry",
    "JobMessage",
    "Node",
    "Schedule",
    "Delay",
    "SyncClient",
    # configuration
    "AmqpConfig",
    "EtcdConfig",
    "HistoryConfig",
    "NodeConfig",
    "TlsFiles",
    # what the client returns
    "PartitionSpec",
    "PartitionInfo",
    "QueueInfo",
    "NodeConsumer",
    "QueueRates",
    "NodeInfo",
    "QueuedJob",
    "BuriedJob",
    "Scheduled",
    "ScheduledJob",
    "ScheduleInfo",
    "RunningJobs",
    "RunningJob",
    "UnreachableNode",
    "Finding",
    "DrainProgress",
    "JobEvent",
    "JobStory",
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
    "RemoteError",
    "__version__",
]
