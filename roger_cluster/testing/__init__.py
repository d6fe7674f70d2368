"""Test kit for roger_cluster and for users testing their own jobs.

A pytest plugin (entry point `pytest11`, module `roger_cluster.testing.plugin`)
giving real servers, real `roger-node` processes and wait helpers. Nothing
here mocks RabbitMQ or etcd.
"""

from .nodes import NodeFactory, NodeProcess
from .wait import eventually

__all__ = ["NodeFactory", "NodeProcess", "eventually"]
