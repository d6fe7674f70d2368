"""Parking a job with an execution key: the one protocol, used by the client and the node.

A job with an execution key does not go to its partition queue: it waits in
its key's FIFO waiting queue (`names.exec_waiting_queue_name`) until the
key's holder runs it (see `cluster/execkeys.py`). Parking it takes three
steps, in this order:

1. count it in etcd (a transaction that also reads the key's lock);
2. publish it to the waiting queue and wait for the confirm;
3. if no node holds the key, publish a *wake* to the partition queue.

The count comes first so that parking either happens or raises: with etcd
unreachable it fails before anything is published, and a publish that fails
after the count is counted off again. A holder that finds the waiting queue
empty while the count says a job is coming waits for it (the publish follows
the count within milliseconds), so a job is never stranded behind a holder
that gave up. A wake that cannot be published is not an error: every node
scans for keys with waiting jobs and no holder (`runtime/chains.py`).
"""

from __future__ import annotations

import logging

from .broker import Broker
from .cluster.execkeys import ExecKeys
from .codec import JobMessage
from .errors import BrokerError, ClusterError
from .job import new_job_id
from .names import key_id

log = logging.getLogger(__name__)

WAKE_JOB = "roger_cluster:wake"  # a wake message's job name; never a class


def wake_message(queue: str, execution_key: str) -> JobMessage:
    """The message that makes a node run the waiting jobs of `execution_key`."""
    return JobMessage(new_job_id(), WAKE_JOB, None, queue, execution_key=key_id(execution_key))


async def park(broker: Broker, exec_keys: ExecKeys, message: JobMessage, partition: str) -> None:
    """Put a job with an execution key in its key's waiting queue, counted, and wake the key
    if nobody holds it. Raises (ClusterError, BrokerError) with nothing left behind."""
    key = message.execution_key
    assert key is not None, "only jobs with an execution key are parked"
    held = await exec_keys.add_waiting(partition, key, message.queue)
    try:
        await broker.publish_waiting(message, partition)
    except BaseException:
        try:
            await exec_keys.finish_one(partition, key)
        except ClusterError as e:  # the holder corrects a count with no job behind it
            log.warning("job %s: could not count off its failed park (%s)", message.id, e)
        raise
    if not held:
        await wake(broker, partition, message.queue, key)


async def wake(broker: Broker, partition: str, queue: str, key: str, level: int = logging.WARNING) -> bool:
    """Publish a wake for `key`; a failure is logged at `level` (the nodes' scan
    covers it) and returns False."""
    try:
        await broker.publish(wake_message(queue, key), partition)
    except BrokerError as e:
        log.log(level, "could not wake execution key %s of %s (%s); the nodes' scan will", key, partition, e)
        return False
    return True
