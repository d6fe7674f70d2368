"""Which broker of a RabbitMQ cluster a process picks: rendezvous order, no I/O."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from roger_cluster.broker.connection import Connection
from roger_cluster.broker.spread import attempt_order, broker_order
from roger_cluster.config import AmqpConfig

BROKERS = ["amqp://rabbit-0:5672/", "amqp://rabbit-1:5672/", "amqp://rabbit-2:5672/"]


def test_a_node_ranks_the_brokers_the_same_way_every_time() -> None:
    order = broker_order(BROKERS, "node-7")
    assert sorted(order) == [0, 1, 2]
    assert broker_order(BROKERS, "node-7") == order
    # The listed order does not matter: the same broker comes first.
    reversed_order = broker_order(BROKERS[::-1], "node-7")
    assert BROKERS[::-1][reversed_order[0]] == BROKERS[order[0]]


def test_nodes_spread_about_evenly_over_the_brokers_first_and_second_choices_alike() -> None:
    orders = [broker_order(BROKERS, f"node-{i}") for i in range(3000)]
    first = Counter(order[0] for order in orders)
    assert all(900 <= first[b] <= 1100 for b in range(3)), first
    # Those that lose their broker spread over the other two.
    moved = Counter(order[1] for order in orders if order[0] == 0)
    assert abs(moved[1] - moved[2]) < 0.2 * first[0], moved


def test_adding_a_broker_moves_only_the_nodes_that_now_prefer_it() -> None:
    grown = [*BROKERS, "amqp://rabbit-3:5672/"]
    names = [f"node-{i}" for i in range(1000)]
    before = {n: BROKERS[broker_order(BROKERS, n)[0]] for n in names}
    after = {n: grown[broker_order(grown, n)[0]] for n in names}
    moved = [n for n in names if before[n] != after[n]]
    assert all(after[n] == grown[3] for n in moved)
    assert 180 <= len(moved) <= 320


def test_a_lost_broker_is_tried_last_and_a_lost_fallback_sends_a_node_home() -> None:
    order = (2, 0, 1)
    assert attempt_order(order, None) == [2, 0, 1]  # the first connect
    assert attempt_order(order, 2) == [0, 1, 2]  # lost its first choice: the next
    assert attempt_order(order, 0) == [2, 1, 0]  # lost the fallback: home first


def test_a_node_connection_ranks_by_its_name_without_credentials() -> None:
    urls = ["amqp://a:secret@rabbit-0:5672/", "amqp://a:other@rabbit-1:5672/", "amqp://rabbit-2:5672/"]
    connection = Connection(AmqpConfig(url=",".join(urls)), connection_name="node-7")
    assert connection.broker_order == broker_order(BROKERS, "node-7")


def test_clients_without_a_name_pick_their_own_orders() -> None:
    config = AmqpConfig(url=",".join(BROKERS))
    firsts = {Connection(config).broker_order[0] for _ in range(60)}
    assert firsts == {0, 1, 2}  # 60 clients all on one broker: (1/3)^59


def test_the_children_of_a_fork_rank_the_brokers_each_their_own_way(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = Connection(AmqpConfig(url=",".join(BROKERS)))
    firsts = set()
    for pid in range(1000, 1060):  # a SyncClient made before gunicorn forks its workers
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        firsts.add(connection.broker_order[0])
    assert firsts == {0, 1, 2}
    named = Connection(AmqpConfig(url=",".join(BROKERS)), connection_name="node-7")
    assert named.broker_order == broker_order(BROKERS, "node-7")  # a node's does not change
