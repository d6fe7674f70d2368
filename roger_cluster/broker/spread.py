"""Which broker of a RabbitMQ cluster a process connects to, and where it goes next.

`ROGER_AMQP_URL` may list every member of a RabbitMQ cluster. If every process took
the first, one member would carry every connection (and, with RabbitMQ's
`client-local` default, every queue leader its clients declare) while the others
idle. So each process ranks the URLs by rendezvous (highest-random-weight) hashing
of a key of its own over each broker's identity: a node ranks them by its node
name, so the same node always prefers the same member and N nodes land about N/3
per member of a 3-member cluster; a client (which has no name) ranks them by a
random key drawn when its connection object is made.

Rendezvous rather than `hash(key) % len(urls)`: adding or removing one URL moves
only the processes that preferred it, and the rest of each order (where a process
goes when its broker fails) is spread as evenly as the first choice. The hash is
blake2b, not Python's `hash()`, which is salted per process: the order must be the
same on every start and on every machine. The broker's identity is its URL without
the credentials, so rotating a password reshuffles nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def weight(key: str, broker: str) -> int:
    """The rendezvous weight of `broker` for `key`: stable across processes and machines."""
    digest = hashlib.blake2b(f"{key}\0{broker}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def broker_order(brokers: Sequence[str], key: str) -> tuple[int, ...]:
    """The indices of `brokers` (their identities, without credentials) in the order
    the process with `key` tries them: the heaviest first; equal identities keep
    their listed order."""
    return tuple(sorted(range(len(brokers)), key=lambda i: (-weight(key, brokers[i]), i)))


def attempt_order(order: Sequence[int], current: int | None) -> list[int]:
    """The order of one connect: `order`, with the broker of the connection we had
    (`current`, the one that just failed us) moved to the end, so a node that lost
    its first choice moves to the next, and one that lost a fallback goes home first."""
    attempts = [i for i in order if i != current]
    if current is not None and current in order:
        attempts.append(current)
    return attempts
