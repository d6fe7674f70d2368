"""Test kit for roger_cluster and for users testing their own jobs.

A pytest plugin (entry point `pytest11`, module `roger_cluster.testing.plugin`)
giving real servers, real `roger-node` processes and wait helpers. Nothing
here mocks RabbitMQ or etcd.

- `plugin`: the fixtures (`roger_client`, `node_factory`, `roger_management`,
  `roger_partition`, `ledger`, private servers and clusters);
- `inline`: `InlineClient`, jobs run in-process at enqueue, for unit tests
  of an app's own jobs without any server (the one exception to "real");
- `nodes`: `NodeFactory` / `NodeProcess`, real node processes;
- `consumers`: what RabbitMQ shows (consumers, prefetches, ready messages)
  and `start_consuming`, the usual set-up: nodes, partition, consumers;
- `ledger`: what jobs record in a file and the test reads back;
- `rogerctl`: the CLI run against the test's cluster;
- `wait`: `eventually` and `equals`, for waiting instead of sleeping;
- `servers` (with `discovery`, `etcd`, `rabbitmq`, `processes`, `probes`):
  the real servers.
"""

from .consumers import (
    consumers,
    consumers_by_node,
    prefetches,
    ready,
    start_consuming,
    wait_consumers,
    wait_prefetches,
)
from .inline import InlineClient, InlineRun
from .ledger import ended, events, record
from .nodes import NodeFactory, NodeProcess
from .rogerctl import rogerctl, start_rogerctl
from .wait import equals, eventually

__all__ = [
    # unit tests without servers
    "InlineClient",
    "InlineRun",
    # nodes and the CLI
    "NodeFactory",
    "NodeProcess",
    "rogerctl",
    "start_rogerctl",
    # set-up and conditions to wait for
    "consumers",
    "consumers_by_node",
    "equals",
    "eventually",
    "prefetches",
    "ready",
    "start_consuming",
    "wait_consumers",
    "wait_prefetches",
    # ledgers
    "ended",
    "events",
    "record",
]
