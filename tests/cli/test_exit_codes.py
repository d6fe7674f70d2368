"""rogerctl refuses what cannot work, exits by one table of codes (docs/cli.md),
and says why in one readable line: no traceback, no raw AMQP text."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from roger_cluster import Client, errors
from roger_cluster.cli.common import Exit, exit_code
from roger_cluster.cluster import keys
from roger_cluster.names import queue_name
from roger_cluster.testing import NodeFactory
from roger_cluster.testing.consumers import ready
from roger_cluster.testing.rogerctl import rogerctl

CLI_MD = Path(__file__).parents[2] / "docs" / "cli.md"


def test_docs_cli_md_has_the_one_table_of_exit_codes_and_every_error_maps_into_it() -> None:
    table = CLI_MD.read_text().split("### Exit codes", 1)[1].split("\n\n")[2]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert documented == {int(code) for code in Exit}
    for name in dir(errors):
        kind = getattr(errors, name)
        if isinstance(kind, type) and issubclass(kind, errors.RogerError):
            error = kind(400, "x") if kind is errors.HttpError else kind("x")
            assert exit_code(error) in Exit
    assert exit_code(errors.InvalidEntry("x")) == Exit.INVALID_STATE
    assert exit_code(errors.UnknownQueue("x")) == Exit.NOT_FOUND
    assert exit_code(errors.DuplicateJob("x")) == Exit.CONFLICT
    assert exit_code(errors.ClusterConnectionError("x")) == Exit.FAILED
    assert exit_code(errors.ManagementError("x")) == Exit.FAILED
    assert exit_code(errors.DrainTimeout("x")) == Exit.FAILED


def run(factory: NodeFactory, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """rogerctl with `stdin` as its standard input."""
    return rogerctl(factory, *args, input=stdin)


def assert_one_readable_line(done: subprocess.CompletedProcess[str], *wanted: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("rogerctl: "), done.stderr
    for raw in ("Traceback", "NOT_FOUND", "vhost", "ChannelClosed", "<"):
        assert raw not in lines[0], done.stderr
    for text in wanted:
        assert text in lines[0], done.stderr


async def test_commands_on_a_missing_partition_or_queue_exit_4_with_one_line(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    job = ["tests.jobs:Record", '{"ledger": "/dev/null"}']
    for args in (
        ["job", "buried", p, "default"],
        ["job", "retry-buried", p, "default"],
        ["job", "purge-buried", p, "default"],
        ["job", "delete-buried", p, "default", "some-id"],
        ["job", "queued", p, "default"],
        ["queue", "pause", p, "default"],
        ["queue", "resume", p, "default"],
        ["partition", "show", p],
        ["partition", "stop", p],
        ["job", "enqueue", p, *job],
    ):
        done = rogerctl(node_factory, *args)
        assert done.returncode == 4, (args, done.stderr)
        assert_one_readable_line(done, repr(p))

    assert rogerctl(node_factory, "partition", "start", p, "default=1").returncode == 0
    for args in (
        ["job", "buried", p, "nope"],
        ["job", "retry-buried", p, "nope"],
        ["job", "purge-buried", p, "nope"],
        ["queue", "resume", p, "nope"],
        ["job", "enqueue", p, *job, "--queue", "nope"],
        ["job", "enqueue", p, *job, "--queue", "nope", "--force"],  # no RabbitMQ queue either
    ):
        done = rogerctl(node_factory, *args)
        assert done.returncode == 4, (args, done.stderr)
        assert_one_readable_line(done, "nope")
    assert await ready(roger_client, queue_name(p, "nope")) is None


async def test_a_job_class_missing_from_an_importable_module_is_refused_with_exit_2(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    assert rogerctl(node_factory, "partition", "start", p, "default=1").returncode == 0
    done = rogerctl(node_factory, "job", "enqueue", p, "tests.jobs:Nope", "{}")
    assert done.returncode == 2, done.stderr
    assert_one_readable_line(done, "module tests.jobs has no Nope")
    assert await ready(roger_client, queue_name(p, "default")) == 0


async def test_a_module_that_cannot_be_imported_here_is_a_warning_and_the_job_is_enqueued(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    assert rogerctl(node_factory, "partition", "start", p, "default=1").returncode == 0
    done = rogerctl(node_factory, "job", "enqueue", p, "app_only_on_nodes.jobs:SendMail", "{}")
    assert done.returncode == 0, done.stderr
    assert_one_readable_line(done, "cannot import app_only_on_nodes.jobs here")
    assert len(done.stdout.strip()) == 32
    assert await ready(roger_client, queue_name(p, "default")) == 1


async def test_enqueue_to_a_stopped_partition_exits_4_unless_forced(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p = roger_partition
    job = ["tests.jobs:Record", '{"ledger": "/dev/null"}']
    assert rogerctl(node_factory, "partition", "start", p, "default=1").returncode == 0
    assert rogerctl(node_factory, "partition", "stop", p).returncode == 0  # its queue stays

    refused = rogerctl(node_factory, "job", "enqueue", p, *job)
    assert refused.returncode == 4, refused.stderr
    assert_one_readable_line(refused, "is not started", "--force")
    assert await ready(roger_client, queue_name(p, "default")) == 0

    forced = rogerctl(node_factory, "job", "enqueue", p, *job, "--force")
    assert forced.returncode == 0, forced.stderr
    assert await ready(roger_client, queue_name(p, "default")) == 1


async def test_job_arguments_come_from_a_file_or_stdin_when_too_big_for_a_command_line(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, tmp_path: Path
) -> None:
    p = roger_partition
    assert rogerctl(node_factory, "partition", "start", p, "default=1").returncode == 0
    big = {"ledger": "/dev/null", "blob": "x" * 300_000}  # past Linux's 128 KiB per argument
    path = tmp_path / "args.json"
    path.write_text(json.dumps(big))

    from_file = run(node_factory, "job", "enqueue", p, "tests.jobs:Record", f"@{path}")
    assert from_file.returncode == 0, from_file.stderr
    from_stdin = run(node_factory, "job", "enqueue", p, "tests.jobs:Record", "-", stdin=json.dumps({"n": 2}))
    assert from_stdin.returncode == 0, from_stdin.stderr

    queued = await roger_client.queued(p, "default")
    assert [(j.id, j.args) for j in queued] == [
        (from_file.stdout.strip(), big),
        (from_stdin.stdout.strip(), {"n": 2}),
    ]
    missing = run(node_factory, "job", "enqueue", p, "tests.jobs:Record", f"@{tmp_path / 'nope.json'}")
    assert missing.returncode == 2
    assert_one_readable_line(missing, "cannot read job arguments")
    bad = run(node_factory, "job", "enqueue", p, "tests.jobs:Record", "-", stdin="{not json")
    assert bad.returncode == 2
    assert_one_readable_line(bad, "job arguments on stdin are not valid JSON")


async def test_a_corrupt_partition_entry_is_listed_by_doctor_and_removed_by_stop(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str
) -> None:
    p, ns = roger_partition, roger_client.namespace
    etcd = await roger_client.etcd()
    assert rogerctl(node_factory, "doctor").returncode == 0
    await etcd.put(keys.partition(ns, p), b"{not json")
    await etcd.put(keys.paused_prefix(ns) + "stray", b"{}")

    shown = rogerctl(node_factory, "partition", "show", p)
    assert shown.returncode == 5, shown.stderr
    assert_one_readable_line(shown, f"partition {p!r} in etcd is not valid", "rogerctl doctor")

    doctor = rogerctl(node_factory, "--json", "doctor")
    assert doctor.returncode == 5, doctor.stderr
    found = {f["key"]: f for f in json.loads(doctor.stdout)}
    assert set(found) == {keys.partition(ns, p), keys.paused_prefix(ns) + "stray"}
    assert all(f["ignored"] for f in found.values())
    assert f"partition stop {p}" in found[keys.partition(ns, p)]["fix"]

    stopped = rogerctl(node_factory, "partition", "stop", p, "--drain")
    assert stopped.returncode == 0, stopped.stderr
    assert_one_readable_line(stopped, "is not valid", "removed it anyway (without a drain)")
    assert await etcd.get(keys.partition(ns, p)) is None
    await etcd.delete(keys.paused_prefix(ns) + "stray")
    healthy = rogerctl(node_factory, "doctor")
    assert healthy.returncode == 0, healthy.stderr
    assert "nothing ignored" in healthy.stdout
