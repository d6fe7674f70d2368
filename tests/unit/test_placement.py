"""Placement, pause and drain as pure data: what a node consumes, no I/O."""

from __future__ import annotations

import json
import random

import pytest

from roger_cluster import ConfigError
from roger_cluster.cli.common import split_list
from roger_cluster.cli.node import build_config, parse_concurrency, parser
from roger_cluster.cluster import keys
from roger_cluster.cluster.membership import NodeInfo
from roger_cluster.cluster.partitions import PartitionMap, PartitionSpec
from roger_cluster.config import NodeConfig
from roger_cluster.placement import (
    Assignments,
    NodeProfile,
    chosen,
    describe,
    desired_queues,
    draining_partitions,
    placement_cost,
    runs_on,
    score,
)


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


# --replicas: K of the eligible live nodes by rendezvous hashing.


def members(*names: str, labels: frozenset[str] = frozenset()) -> dict[str, frozenset[str]]:
    return {name: labels for name in names}


def test_the_rendezvous_score_is_a_stable_hash_not_pythons_salted_one() -> None:
    # Fixed values: every node on every machine and Python run must compute the same.
    assert score("myapp", "node1") == 0xA4D19412446C1AB9
    assert score("myapp", "node2") == 0xE0D33CDEA0BEFDAD
    assert score("myapp", "node1") != score("node1", "myapp")


def test_replicas_picks_k_of_the_eligible_nodes_and_all_of_them_when_there_are_fewer() -> None:
    live = members("n1", "n2", "n3", "n4", "n5")
    spec = PartitionSpec("myapp", {"default": 1}, replicas=2)
    picked = chosen(spec, live)
    assert len(picked) == 2 and set(picked) <= set(live)
    assert chosen(spec, dict(reversed(list(live.items())))) == picked  # order of the members does not matter
    assert chosen(PartitionSpec("myapp", {"default": 1}, replicas=9), live) == tuple(sorted(live))
    assert chosen(PartitionSpec("myapp", {"default": 1}), live) == tuple(sorted(live))


def test_labels_and_nodes_still_decide_who_is_eligible_with_replicas() -> None:
    live = {**members("a1", "a2", "a3", labels=frozenset({"gpu"})), **members("b1", "b2")}
    gpu = PartitionSpec("gpu", {"default": 1}, labels=("gpu",), replicas=2)
    assert len(chosen(gpu, live)) == 2 and set(chosen(gpu, live)) <= {"a1", "a2", "a3"}
    named = PartitionSpec("named", {"default": 1}, nodes=("a1", "b1"), replicas=3)
    assert chosen(named, live) == ("a1", "b1")


def test_replicas_spread_evenly_over_the_nodes() -> None:
    live = members(*(f"node{i}" for i in range(50)))
    load = dict.fromkeys(live, 0)
    for i in range(2000):
        for name in chosen(PartitionSpec(f"p{i}", {"default": 1}, replicas=3), live):
            load[name] += 1
    mean = 2000 * 3 / 50
    assert sum(load.values()) == 6000
    assert max(load.values()) / mean < 1.3 and min(load.values()) / mean > 0.7


def test_a_join_moves_about_one_nth_of_the_assignments_and_only_to_the_new_node() -> None:
    before = members(*(f"node{i}" for i in range(50)))
    after = {**before, "newcomer": frozenset()}
    specs = [PartitionSpec(f"p{i}", {"default": 1}, replicas=3) for i in range(2000)]
    moved = 0
    for spec in specs:
        old, new = set(chosen(spec, before)), set(chosen(spec, after))
        assert new - old <= {"newcomer"} and len(old - new) == len(new - old)
        moved += len(new - old)
    expected = 2000 * 3 / 51
    assert 0.7 * expected < moved < 1.3 * expected


def test_a_death_moves_only_the_dead_nodes_assignments() -> None:
    before = members(*(f"node{i}" for i in range(50)))
    after = {name: labels for name, labels in before.items() if name != "node7"}
    for i in range(500):
        spec = PartitionSpec(f"p{i}", {"default": 1}, replicas=3)
        old, new = set(chosen(spec, before)), set(chosen(spec, after))
        assert old - new == ({"node7"} & old) and len(new) == 3


def test_assignments_kept_current_step_by_step_equal_a_full_recompute() -> None:
    rng = random.Random(16)
    names = [f"n{i}" for i in range(30)]
    live: dict[str, frozenset[str]] = {n: frozenset() for n in names[:10]}
    specs = {
        f"p{i}": PartitionSpec(
            f"p{i}", {"default": 1}, labels=("gpu",) if i % 5 == 0 else (), replicas=1 + i % 4
        )
        for i in range(200)
    }
    assignments = Assignments()
    for _ in range(60):
        step = rng.random()
        if step < 0.35:
            live[rng.choice(names)] = frozenset({"gpu"}) if rng.random() < 0.5 else frozenset()
        elif step < 0.7 and live:
            live.pop(rng.choice(sorted(live)))
        else:
            i = rng.randrange(200)
            specs[f"p{i}"] = PartitionSpec(f"p{i}", {"default": 1}, replicas=rng.choice([None, 1, 2, 5]))
        assignments.update(specs, dict(live))
        for spec in specs.values():
            expected = chosen(spec, live) if spec.replicas is not None else ()
            assert assignments.nodes_of(spec.name) == expected
    copy = assignments.copy()  # independent: emptying the copy leaves the original as it was
    copy.update({}, {})
    assert all(
        assignments.nodes_of(s.name) == (chosen(s, live) if s.replicas is not None else ())
        for s in specs.values()
    )


def test_with_replicas_only_the_chosen_nodes_consume_and_a_pause_holds_on_a_replacement() -> None:
    live = members("n1", "n2", "n3")
    spec = PartitionSpec("rep", {"default": 4, "other": 2}, replicas=1)
    partitions = cluster(PLAIN, spec)
    assignments = Assignments()
    assignments.update(partitions, live)
    [first] = assignments.nodes_of("rep")
    assert ("rep", "default") in desired_queues(partitions, node=NodeProfile(first), assignments=assignments)
    for other in set(live) - {first}:
        assert desired_queues(partitions, node=NodeProfile(other), assignments=assignments) == desired_queues(
            cluster(PLAIN)
        )
    # Without the members known, a node consumes no partition with replicas.
    assert ("rep", "default") not in desired_queues(partitions, node=NodeProfile(first))

    # The chosen node dies: another takes its place, and a paused queue stays paused there.
    paused = frozenset({("rep", "other")})
    assignments.update(partitions, {n: f for n, f in live.items() if n != first})
    [second] = assignments.nodes_of("rep")
    assert second != first
    mine = desired_queues(partitions, paused, NodeProfile(second), assignments)
    assert ("rep", "default") in mine and ("rep", "other") not in mine

    # Draining: consumed by no node, chosen or not.
    drained = cluster(PLAIN, PartitionSpec("rep", {"default": 4}, draining=True, replicas=1))
    assignments.update(drained, live)
    assert all(
        ("rep", "default") not in desired_queues(drained, node=NodeProfile(n), assignments=assignments)
        for n in live
    )


def test_replicas_go_through_the_etcd_value_and_old_values_mean_every_node() -> None:
    spec = PartitionSpec("myapp", {"default": 10}, replicas=2)
    assert json.loads(spec.encode()) == {"queues": {"default": 10}, "replicas": 2}
    assert PartitionSpec.decode("myapp", spec.encode()) == spec
    assert PartitionSpec.decode("myapp", b'{"queues": {"default": 10}}').replicas is None


@pytest.mark.parametrize("value", [0, -1, "2", True, 2.5, 10_001])
def test_a_bad_replicas_count_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="replicas of partition 'myapp' must be"):
        PartitionSpec.decode("myapp", json.dumps({"queues": {"default": 1}, "replicas": value}).encode())


def test_describe_says_which_nodes_run_a_partition_and_why() -> None:
    live = {**members("n1", "n2", "n3"), "g1": frozenset({"gpu"})}
    spec = PartitionSpec("myapp", {"default": 1}, replicas=2)
    picked = ", ".join(chosen(spec, live))
    assert describe(spec, live) == f"replicas 2 of 4 eligible: {picked} (rendezvous)"
    gpu = PartitionSpec("myapp", {"default": 1}, labels=("gpu",), replicas=2)
    assert describe(gpu, live) == "replicas 2, but only 1 eligible: all of them: g1"
    assert describe(PartitionSpec("myapp", {"default": 1}), live) == "every live node (4): g1, n1, n2, n3"
    assert describe(PartitionSpec("myapp", {"default": 1}, labels=("gpu",)), live) == (
        "every eligible node (1 of 4 live): g1"
    )
    assert describe(PartitionSpec("myapp", {"default": 1}, draining=True), live).startswith("draining")


def test_placement_cost_counts_a_score_per_member_and_replicated_partition() -> None:
    partitions = cluster(
        PLAIN, PartitionSpec("a", {"default": 1}, replicas=2), PartitionSpec("b", {"x": 1}, replicas=1)
    )
    assert placement_cost(partitions, members("n1", "n2", "n3")) == 6
