"""The Dramatiq side: one no-op actor that records its execution, on a RabbitmqBroker.

Imported by the worker (`dramatiq dramatiq_app`) and by the publisher; both read the queue, broker
URL and tally file from environment variables that run.py sets for them (Dramatiq itself reads
its prefetch from `dramatiq_queue_prefetch`). Dramatiq acks after the actor ran; its default
middleware (age limit, time limit, retries, ...) stays on, as a user would run it.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from tally import Tally

QUEUE = os.environ["PEERS_QUEUE"]
tally = Tally(os.environ["PEERS_TALLY"])

broker = RabbitmqBroker(url=os.environ["PEERS_AMQP_URL"], confirm_delivery=True)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def noop(index: int) -> None:
    tally.record(index)
