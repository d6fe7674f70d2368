"""Asking the nodes: a control queue per node, and the client that asks them all.

Some cluster state lives only in a node's memory: which jobs run there right
now. etcd tells which nodes are alive; RabbitMQ carries the question to each.
Every node consumes its own control queue (`server.py`); a client sends one
request per node and gathers the replies until a deadline (`client.py`); both
speak the format of `wire.py`. An op is a name and a handler: adding one adds
a handler on the node (`server.worker_handlers`) and a function in `client.py`.

This package goes through the broker's `Consumer` for every AMQP operation,
and imports the runtime only for type checking (the client side must not).
"""

from __future__ import annotations

from .client import DEFAULT_TIMEOUT, Answers, RunningJobs, UnreachableNode, ask, running
from .server import ControlServer, Handler, running_jobs, worker_handlers
from .wire import RemoteError, RunningJob, decode_reply, decode_request, encode_reply, encode_request

__all__ = [
    "DEFAULT_TIMEOUT",
    "Answers",
    "ControlServer",
    "Handler",
    "RemoteError",
    "RunningJob",
    "RunningJobs",
    "UnreachableNode",
    "ask",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
    "running",
    "running_jobs",
    "worker_handlers",
]
