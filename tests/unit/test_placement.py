"""Placement, pause and drain as pure data: what a node consumes, no I/O."""

from __future__ import annotations

import json

import pytest

from roger_cluster import ConfigError
from roger_cluster.cli.common import split_list
from roger_cluster.cli.node import build_config, parse_concurrency, parser
from roger_cluster.cluster import keys
from roger_cluster.cluster.membership import NodeInfo
from roger_cluster.cluster.partitions import PartitionMap, PartitionSpec
from roger_cluster.config import NodeConfig
from roger_cluster.placement import NodeProfile, desired_queues, draining_partitions, runs_on


def cluster(*specs: PartitionSpec) -> PartitionMap:
    return {spec.name: spec for spec in specs}


PLAIN = PartitionSpec("plain", {"default": 10, "other": 5})
ON_N1_N2 = PartitionSpec("pinned", {"default": 4}, nodes=("n1", "n2"))
GPU = PartitionSpec("gpu", {"default": 2}, labels=("gpu",))
GPU_SSD = PartitionSpec("both", {"default": 1}, labels=("gpu", "ssd"))
N1_GPU = PartitionSpec("narrow", {"default": 1}, nodes=("n1",), labels=("gpu",))


def test_without_a_selection_every_node_consumes_every_queue_with_its_concurrency() -> None:
    n9 = NodeProfile("n9")
    assert desired_queues(cluster(PLAIN), node=n9) == {("plain", "default"): 10, ("plain", "other"): 5}
    assert desired_queues(cluster(PLAIN)) == desired_queues(cluster(PLAIN), node=n9)


def test_a_partition_limited_to_nodes_is_consumed_only_by_them() -> None:
    partitions = cluster(PLAIN, ON_N1_N2)
    assert ("pinned", "default") in desired_queues(partitions, node=NodeProfile("n1"))
    assert ("pinned", "default") in desired_queues(partitions, node=NodeProfile("n2"))
    assert desired_queues(partitions, node=NodeProfile("n3")) == desired_queues(cluster(PLAIN))


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (set(), set()),
        ({"gpu"}, {"gpu"}),
        ({"ssd"}, set()),
        ({"gpu", "ssd"}, {"gpu", "both"}),
        ({"gpu", "ssd", "big"}, {"gpu", "both"}),
    ],
)
def test_a_partition_limited_to_labels_needs_every_label(labels: set[str], expected: set[str]) -> None:
    node = NodeProfile("n3", frozenset(labels))
    assert {p for p, _ in desired_queues(cluster(GPU, GPU_SSD), node=node)} == expected


def test_with_nodes_and_labels_a_node_must_pass_both() -> None:
    assert runs_on(N1_GPU, NodeProfile("n1", frozenset({"gpu"})))
    assert not runs_on(N1_GPU, NodeProfile("n1"))
    assert not runs_on(N1_GPU, NodeProfile("n2", frozenset({"gpu"})))


def test_a_paused_queue_is_consumed_by_no_node_and_the_other_queues_are() -> None:
    paused = frozenset({("plain", "other"), ("gone", "default")})
    assert desired_queues(cluster(PLAIN), paused, NodeProfile("n1")) == {("plain", "default"): 10}


def test_a_draining_partition_is_consumed_by_no_node() -> None:
    draining = PartitionSpec("old", {"default": 3}, draining=True)
    partitions = cluster(PLAIN, draining)
    assert desired_queues(partitions, node=NodeProfile("n1")) == desired_queues(cluster(PLAIN))
    assert draining_partitions(partitions) == {"old"}


def test_a_concurrency_override_applies_to_that_queue_on_that_node_only() -> None:
    node = NodeProfile("n1", concurrency={("plain", "default"): 3, ("pinned", "default"): 7, ("x", "y"): 1})
    assert desired_queues(cluster(PLAIN, ON_N1_N2), node=node) == {
        ("plain", "default"): 3,
        ("plain", "other"): 5,
        ("pinned", "default"): 7,
    }
    # An override never places a queue on a node the partition does not select, nor a paused one.
    outside = NodeProfile("n3", concurrency={("pinned", "default"): 7, ("plain", "other"): 9})
    assert desired_queues(cluster(PLAIN, ON_N1_N2), frozenset({("plain", "other")}), outside) == {
        ("plain", "default"): 10
    }


def test_partition_spec_keeps_placement_and_draining_through_its_etcd_value() -> None:
    spec = PartitionSpec("myapp", {"default": 10}, nodes=("n2", "n1", "n1"), labels=("gpu",), draining=True)
    assert spec.nodes == ("n1", "n2")
    assert PartitionSpec.decode("myapp", spec.encode()) == spec
    assert json.loads(spec.encode()) == {
        "queues": {"default": 10},
        "nodes": ["n1", "n2"],
        "labels": ["gpu"],
        "draining": True,
    }


def test_a_value_written_before_placement_existed_still_decodes() -> None:
    spec = PartitionSpec.decode("myapp", b'{"queues": {"default": 10}}')
    assert (spec.nodes, spec.labels, spec.draining) == ((), (), False)
    assert json.loads(spec.encode()) == {"queues": {"default": 10}}


@pytest.mark.parametrize(
    "value",
    [
        b'{"queues": {"default": 1}, "nodes": "n1"}',
        b'{"queues": {"default": 1}, "labels": [1]}',
        b'{"queues": {"default": 1}, "draining": "yes"}',
        b'{"queues": {"default": 1}, "nodes": ["bad name"]}',
    ],
)
def test_a_bad_placement_in_etcd_is_refused_with_a_clear_error(value: bytes) -> None:
    with pytest.raises(ConfigError, match="partition 'myapp' in etcd is not valid|not allowed"):
        PartitionSpec.decode("myapp", value)


def test_node_registration_carries_its_labels_and_old_values_read_without() -> None:
    info = NodeInfo.here("n1", ("gpu", "ssd"))
    assert json.loads(info.encode())["labels"] == ["gpu", "ssd"]
    assert NodeInfo.decode("n1", info.encode()) == info
    old = NodeInfo.decode("n1", b'{"host": "h", "pid": 1, "version": "0.1.0", "started_at": 1.0}')
    assert old.labels == ()


def test_pause_and_drain_keys_live_under_the_namespace() -> None:
    assert keys.paused("roger", "myapp", "default") == "roger/paused/myapp/default"
    assert keys.paused("roger", "myapp", "default").startswith(keys.paused_prefix("roger"))
    assert keys.drained("roger", "myapp", "n1") == "roger/drained/myapp/n1"
    assert keys.drained("roger", "myapp", "n1").startswith(keys.drained_prefix("roger", "myapp"))
    with pytest.raises(ConfigError):
        keys.paused("roger", "my-app", "default")


def test_roger_node_reads_labels_and_overrides_from_repeated_or_comma_separated_flags() -> None:
    args = parser().parse_args(
        ["--name", "n1", "--label", "gpu,ssd", "--label", "big", "--concurrency", "a.default=3,b.x=2"]
    )
    config = build_config(args)
    assert config.labels == ("big", "gpu", "ssd")
    assert dict(config.concurrency) == {("a", "default"): 3, ("b", "x"): 2}
    assert split_list(None) == [] and split_list([" a, ,b "]) == ["a", "b"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["default=3"], "PARTITION.QUEUE=N"),
        (["a.default"], "PARTITION.QUEUE=N"),
        (["a.default=x"], "whole number"),
        (["a.default=1", "a.default=2"], "twice"),
        (["a-b.default=1"], "not allowed"),
    ],
)
def test_bad_concurrency_overrides_are_refused_with_a_clear_message(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_concurrency(items)


def test_node_config_checks_labels_and_override_values() -> None:
    with pytest.raises(ConfigError, match="between 1 and"):
        NodeConfig(name="n1", concurrency={("a", "default"): 0})
    with pytest.raises(ConfigError, match="label name"):
        NodeConfig(name="n1", labels=("a b",))
