"""The Celery side: one no-op task that records its execution, and how the benchmark configures it.

Imported by the worker (`celery -A celery_app worker`) and by the publisher; both read the queue,
broker URL, tally file and prefetch from environment variables that run.py sets for them.
`acks_late`: the message is acked after the task ran, as roger_cluster acks after the job ran.
Remote control, events, gossip and mingle are off: they add queues and traffic, not per-job work.
"""

from __future__ import annotations

import os

from celery import Celery
from tally import Tally

QUEUE = os.environ["PEERS_QUEUE"]
tally = Tally(os.environ["PEERS_TALLY"])

app = Celery("peers", broker=os.environ["PEERS_AMQP_URL"])
app.conf.update(
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_acks_late=True,
    task_ignore_result=True,
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=int(os.environ.get("PEERS_PREFETCH") or 4),  # solo: x 1 process
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
)


@app.task(name="peers.noop")
def noop(index: int) -> None:
    tally.record(index)
