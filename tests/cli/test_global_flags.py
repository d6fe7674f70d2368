"""Global flags go before or after the subcommand (`rogerctl nodes --json`), and
errors say what to do: the flag, variable or command that fixes them."""

from __future__ import annotations

import json

import pytest

from roger_cluster import Client
from roger_cluster.cli import ctl, tree
from roger_cluster.cli.common import explain
from roger_cluster.errors import (
    BrokerConnectionError,
    ClusterConnectionError,
    ManagementError,
    RogerError,
    UnknownPartition,
    UnknownQueue,
    UnknownSchedule,
    UnroutableJob,
)
from roger_cluster.testing import NodeFactory
from roger_cluster.testing.rogerctl import rogerctl


def test_every_subcommand_accepts_every_global_flag() -> None:
    root = ctl.parser()
    shared = {name for option in tree.options(root) for name in option.names}
    for path, parser in tree.walk("rogerctl", root):
        names = {name for option in tree.options(parser) for name in option.names}
        assert shared <= names, f"{path} lacks {sorted(shared - names)}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--namespace", "a", "partition", "show", "x"],
        ["partition", "show", "x", "--json", "--namespace", "a"],
        ["partition", "--json", "show", "x", "--namespace=a"],
        ["--namespace", "a", "partition", "show", "x", "--json"],
    ],
)
def test_a_global_flag_means_the_same_before_or_after_the_command(argv: list[str]) -> None:
    args = ctl.parser().parse_args(argv)
    assert (args.json, args.namespace, args.name) == (True, "a", "x")


def test_a_flag_before_the_command_is_not_overwritten_by_the_subcommands_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROGER_NAMESPACE", "from_env")
    monkeypatch.setenv("ROGER_ETCD", "etcd.example:2379")
    parser = ctl.parser()
    before = parser.parse_args(["--namespace", "given", "--color", "never", "nodes"])
    assert (before.namespace, before.color, before.etcd) == ("given", "never", "etcd.example:2379")
    plain = parser.parse_args(["nodes"])
    assert (plain.namespace, plain.json, plain.color) == ("from_env", False, "auto")
    after = parser.parse_args(["--namespace", "given", "job", "scheduled", "p", "--namespace", "later"])
    assert after.namespace == "later"


def test_a_bad_choice_after_the_command_exits_2() -> None:
    with pytest.raises(SystemExit) as exited:
        ctl.parser().parse_args(["nodes", "--color", "sometimes"])
    assert exited.value.code == 2


def test_the_subcommands_help_names_the_global_flags_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ctl.parser().parse_args(["nodes", "--help"])
    text = capsys.readouterr().out
    assert "global options:" in text
    assert "--json" in text and "rogerctl --help" in text
    assert "usage: rogerctl nodes [-h]\n" in text


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (ClusterConnectionError("cannot reach etcd at x:1: refused"), "--etcd or ROGER_ETCD"),
        (BrokerConnectionError("cannot reach RabbitMQ at amqp://x:1/: no"), "--amqp-url or ROGER_AMQP_URL"),
        (ManagementError("http://x:15672/api/overview: not found"), "enable rabbitmq_management"),
        (UnknownPartition("partition 'p' does not exist"), "`rogerctl partition start NAME QUEUE=N`"),
        (UnknownPartition("partition 'p' does not exist"), "namespace 'ns' (--namespace, ROGER_NAMESPACE)"),
        (UnknownQueue("partition 'p' has no queue 'q'"), "`rogerctl partition list`"),
        (UnknownSchedule("no schedule named 's'"), "`rogerctl schedule list`"),
        (UnroutableJob("publishing job 1 to p-q: no queue takes it"), "`rogerctl partition start"),
    ],
)
def test_errors_name_their_fix(error: RogerError, fix: str) -> None:
    text = explain(error, "ns")
    assert text.startswith(str(error)) and fix in text


async def test_rogerctl_nodes_json_lists_the_live_nodes(node_factory: NodeFactory) -> None:
    await node_factory.start("alpha")
    for argv in (["nodes", "--json"], ["--json", "nodes"]):
        done = rogerctl(node_factory, *argv)
        assert done.returncode == 0, done.stderr
        nodes = json.loads(done.stdout)
        assert [n["name"] for n in nodes] == ["alpha"]
        assert nodes[0]["pid"] == node_factory.nodes[0].pid


async def test_partition_show_takes_json_and_namespace_after_the_command(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    assert rogerctl(node_factory, "partition", "start", p, "default=2").returncode == 0
    shown = rogerctl(node_factory, "partition", "show", p, "--json")
    assert shown.returncode == 0, shown.stderr
    assert [q["concurrency"] for q in json.loads(shown.stdout)] == [2]
    elsewhere = rogerctl(node_factory, "partition", "show", p, "--namespace", f"{node_factory.namespace}_x")
    assert elsewhere.returncode == 4
    assert "`rogerctl partition list` shows the partitions in namespace" in elsewhere.stderr
    assert len(elsewhere.stderr.strip().splitlines()) == 1


def test_an_unreachable_etcd_after_the_command_names_the_flag(node_factory: NodeFactory) -> None:
    done = rogerctl(node_factory, "nodes", "--etcd", "127.0.0.1:1")
    assert done.returncode == 1
    assert done.stderr.startswith("rogerctl: cannot reach etcd at 127.0.0.1:1")
    assert "Point --etcd or ROGER_ETCD at it" in done.stderr


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (["partition", "start", "p"], "rogerctl partition start"),
        (["frobnicate"], "rogerctl"),
        (["nodes", "--color", "sometimes"], "rogerctl nodes"),
    ],
)
def test_a_usage_error_exits_2_naming_the_help_that_lists_what_it_takes(
    argv: list[str], where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        ctl.main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.rstrip().endswith(f"(`{where} --help` lists what it takes)")
