"""Real etcd and RabbitMQ servers for the test suite and the local demo cluster.

Why it exists: one import for what tests and the demo need of the servers,
whichever module of the kit it lives in:

- `discovery.py`: which servers a test session uses (environment, Docker,
  local binaries) and the cleanup that releases them;
- `etcd.py`, `rabbitmq.py`: private servers and clusters that fault tests
  may stop, kill and restart;
- `processes.py`: the one lifecycle both share, in process groups that
  never outlive the run;
- `probes.py`: readiness probes that speak the real protocols, free ports.
"""

from __future__ import annotations

from .discovery import Cleanup, docker_is_available, find_etcd, find_rabbitmq
from .etcd import ETCD_IMAGE, EtcdEndpoint, EtcdServer, etcd_cluster, find_etcd_binary
from .probes import amqp_is_ready, etcd_is_healthy, free_ports
from .processes import LocalServer, running, start_all
from .rabbitmq import (
    RABBITMQ_IMAGE,
    RabbitEndpoint,
    RabbitServer,
    find_rabbitmq_scripts,
    join_cluster,
    rabbitmq_cluster,
)

__all__ = [
    "ETCD_IMAGE",
    "RABBITMQ_IMAGE",
    "Cleanup",
    "EtcdEndpoint",
    "EtcdServer",
    "LocalServer",
    "RabbitEndpoint",
    "RabbitServer",
    "amqp_is_ready",
    "docker_is_available",
    "etcd_cluster",
    "etcd_is_healthy",
    "find_etcd",
    "find_etcd_binary",
    "find_rabbitmq",
    "find_rabbitmq_scripts",
    "free_ports",
    "join_cluster",
    "rabbitmq_cluster",
    "running",
    "start_all",
]
