"""Names, keys and configuration: pure code, no I/O."""

from __future__ import annotations

import pytest

from roger_cluster import ConfigError
from roger_cluster.cli.ctl import parse_queues
from roger_cluster.cluster import keys
from roger_cluster.cluster.partitions import PartitionSpec
from roger_cluster.config import AmqpConfig, EtcdConfig, NodeConfig
from roger_cluster.names import buried_queue_name, queue_name
from roger_cluster.placement import desired_queues


def test_queue_name_joins_partition_and_queue_with_a_dash() -> None:
    assert queue_name("myapp", "default") == "myapp-default"
    assert buried_queue_name("myapp", "default") == "myapp-default.buried"


@pytest.mark.parametrize("bad", ["", "my-app", "a.b", "a b", "x" * 101, "é"])
def test_names_that_could_collide_or_break_queue_names_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        queue_name(bad, "default")
    with pytest.raises(ConfigError):
        queue_name("myapp", bad)


def test_keys_live_under_the_namespace() -> None:
    assert keys.node("roger", "n1") == "roger/nodes/n1"
    assert keys.partition("roger", "myapp") == "roger/partitions/myapp"
    assert keys.name_of(keys.partitions_prefix("roger"), "roger/partitions/myapp") == "myapp"


def test_parse_queues_reads_queue_equals_concurrency() -> None:
    assert parse_queues(["default=10", "other=5"]) == {"default": 10, "other": 5}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["default=ten"], "whole number"),
        (["default=-1"], "between 1 and"),
        (["default=0"], "between 1 and"),
        (["default"], "QUEUE=CONCURRENCY"),
        (["a-b=1"], "not allowed"),
        (["default=1", "default=2"], "twice"),
    ],
)
def test_parse_queues_refuses_bad_input_with_a_clear_message(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_queues(items)


def test_partition_spec_round_trips_through_its_etcd_value() -> None:
    spec = PartitionSpec("myapp", {"other": 5, "default": 10})
    assert PartitionSpec.decode("myapp", spec.encode()) == spec
    assert list(spec.queues) == ["default", "other"]


@pytest.mark.parametrize("value", [b"", b"{}", b'{"queues": 3}', b'{"queues": {"d": "x"}}', b"\xff"])
def test_a_garbage_partition_value_is_a_config_error(value: bytes) -> None:
    with pytest.raises(ConfigError):
        PartitionSpec.decode("myapp", value)


def test_desired_queues_flattens_the_map() -> None:
    partitions = {
        "a": PartitionSpec("a", {"default": 10}),
        "b": PartitionSpec("b", {"x": 1, "y": 2}),
    }
    assert desired_queues(partitions) == {("a", "default"): 10, ("b", "x"): 1, ("b", "y"): 2}


def test_etcd_endpoints_parse_lists_and_urls() -> None:
    config = EtcdConfig.from_string("10.0.0.1:2379, http://etcd-2:2380,etcd3")
    assert config.endpoints == (("10.0.0.1", 2379), ("etcd-2", 2380), ("etcd3", 2379))
    with pytest.raises(ConfigError):
        EtcdConfig.from_string("host:port")
    with pytest.raises(ConfigError):
        EtcdConfig.from_string(" , ")


def test_amqp_config_hides_the_password_when_described() -> None:
    config = AmqpConfig("amqp://user:secret@rabbit:5673/vh")
    assert "secret" not in config.describe()
    assert config.describe() == "amqp://rabbit:5673/vh"
    with pytest.raises(ConfigError):
        AmqpConfig("http://rabbit")
    with pytest.raises(ConfigError):
        AmqpConfig(queue_type="lazy")


def test_node_config_checks_name_ttl_and_job_modules() -> None:
    with pytest.raises(ConfigError):
        NodeConfig(name="bad name")
    with pytest.raises(ConfigError):
        NodeConfig(name="n1", lease_ttl=1)
    with pytest.raises(ConfigError):
        NodeConfig(name="n1", jobs=("not a module",))
    assert NodeConfig(name="n1.example.com", jobs=("myapp.jobs",)).jobs == ("myapp.jobs",)
