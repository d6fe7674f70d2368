"""The job history: nodes record each job's steps in the namespace's stream; `rogerctl job
show` and `job history` read them back (docs/history.md)."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path
from urllib.parse import quote

from roger_cluster import Client, JobEvent
from roger_cluster.management import Management
from roger_cluster.names import history_stream_name
from roger_cluster.testing import NodeFactory, eventually
from roger_cluster.testing.ledger import events
from roger_cluster.testing.rogerctl import rogerctl
from roger_cluster.testing.servers import free_ports
from tests import jobs


async def _until(client: Client, job_id: str, kind: str, timeout: float = 30) -> list[JobEvent]:
    async def ended() -> list[JobEvent]:
        found = await client.job_events(job_id)
        assert found and found[-1].kind == kind, [e.kind for e in found]
        return found

    return await eventually(ended, timeout=timeout, interval=0.3)


async def test_job_show_lists_every_step_of_a_job_whose_node_was_killed_then_failed_twice_then_succeeded(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    first = await node_factory.start("first", jobs="tests.jobs", ROGER_RETRY_LEVELS="1,1,1")
    await roger_client.start_partition(roger_partition, {"default": 1})
    job = jobs.HangsThenFlaky.create({"ledger": str(ledger), "hang_on": "first", "failures": 2})
    await roger_client.enqueue(job, roger_partition)
    await eventually(lambda: events(ledger, "start"), timeout=15)
    await _until(roger_client, job.id, "started")  # its batch went out before the kill
    assert (await roger_client.job_story(job.id)).state == "running on first"  # asked live
    await node_factory.start("second", jobs="tests.jobs", ROGER_RETRY_LEVELS="1,1,1")
    first.kill()

    await _until(roger_client, job.id, "succeeded")
    shown = rogerctl(node_factory, "--json", "job", "show", job.id)
    assert shown.returncode == 0, shown.stderr
    story = json.loads(shown.stdout)
    steps = [(e["kind"], e["node"], e["attempt"]) for e in story["events"]]
    assert steps == [
        ("started", "first", 1),  # no end: killed
        ("started", "second", 1),
        ("retried", "second", 1),
        ("started", "second", 2),
        ("retried", "second", 2),
        ("started", "second", 3),
        ("succeeded", "second", 3),
    ]
    retried = [e for e in story["events"] if e["kind"] == "retried"]
    assert [(e["error_type"], e["error_message"], e["delay"]) for e in retried] == [
        ("RuntimeError", "attempt 1 fails on purpose", 1),
        ("RuntimeError", "attempt 2 fails on purpose", 1),
    ]
    assert all("Traceback" in e["traceback"] for e in retried)
    assert story["state"] == "succeeded on second"
    assert all(e["job_class"] == "tests.jobs:HangsThenFlaky" for e in story["events"])

    text = rogerctl(node_factory, "job", "show", job.id)
    assert text.returncode == 0, text.stderr
    print(text.stdout)  # the Show of issue 17
    assert f"job {job.id} (tests.jobs:HangsThenFlaky in {roger_partition}-default): succeeded on second" in (
        text.stdout
    )
    assert text.stdout.count("RuntimeError: attempt") == 2


async def test_history_survives_a_node_restart_and_job_history_filters_it(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    node = await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 2, "other": 1})
    done = jobs.Record.create({"ledger": str(ledger)})
    failed = jobs.Fails.create({"ledger": str(ledger)})
    await roger_client.enqueue_many([done, failed], roger_partition)
    await _until(roger_client, failed.id, "buried")
    slow = jobs.Record.create({"ledger": str(ledger), "sleep": 1})
    await roger_client.enqueue(slow, roger_partition)
    await eventually(lambda: events(ledger, "start", slow.id), timeout=15)
    node.signal(signal.SIGTERM)  # the job finishes, and its end goes out before the node leaves
    assert await node.wait_exit() == 0
    assert [e.kind for e in await roger_client.job_events(slow.id)] == ["started", "succeeded"]

    await node_factory.start(jobs="tests.jobs")
    other = jobs.OtherQueue.create({"ledger": str(ledger)})
    await roger_client.enqueue(other, roger_partition)
    await _until(roger_client, other.id, "succeeded")
    before = await roger_client.job_events(done.id)
    assert [e.kind for e in before] == ["started", "succeeded"]  # written before the restart

    def history(*flags: str) -> list[tuple[str, str]]:
        run = rogerctl(node_factory, "--json", "job", "history", roger_partition, *flags)
        assert run.returncode == 0, run.stderr
        return [(e["job_id"], e["kind"]) for e in json.loads(run.stdout)]

    assert history("--state", "succeeded") == [
        (other.id, "succeeded"),
        (slow.id, "succeeded"),
        (done.id, "succeeded"),
    ]
    assert history("--state", "failed") == [(failed.id, "buried")]
    assert history("--state", "buried", "--class", "Fails") == [(failed.id, "buried")]
    assert history("--queue", "other") == [(other.id, "succeeded"), (other.id, "started")]
    assert history("--class", "tests.jobs:Record", "--state", "started") == [
        (slow.id, "started"),
        (done.id, "started"),
    ]
    assert len(history("--limit", "2")) == 2
    assert len(history()) == 8
    assert history("--since", "1s", "--state", "buried") == []


async def test_a_node_with_history_off_writes_nothing(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    await node_factory.start(jobs="tests.jobs", ROGER_HISTORY="off")
    await roger_client.start_partition(roger_partition, {"default": 1})
    job = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue(job, roger_partition)
    await eventually(lambda: events(ledger, "end"), timeout=15)

    broker = await roger_client.broker()
    assert not await broker.stream_exists(history_stream_name(roger_client.namespace))
    assert await roger_client.job_events(job.id) == []
    shown = rogerctl(node_factory, "job", "show", job.id)
    assert shown.returncode == 4, shown.stdout + shown.stderr
    assert "no event recorded" in shown.stdout


async def test_events_rabbitmq_does_not_take_are_dropped_counted_and_logged_and_jobs_go_on(
    node_factory: NodeFactory, roger_client: Client, roger_partition: str, ledger: Path
) -> None:
    (port,) = free_ports(1)
    node = await node_factory.start(jobs="tests.jobs", ROGER_HTTP=f"127.0.0.1:{port}")
    await roger_client.start_partition(roger_partition, {"default": 1})
    before, lost, after = (jobs.Record.create({"ledger": str(ledger)}) for _ in range(3))
    await roger_client.enqueue(before, roger_partition)
    await _until(roger_client, before.id, "succeeded")
    assert _dropped(port) == 0

    # The stream deleted under the node (as an operator could): its next batch is refused.
    broker = await roger_client.broker()
    await broker.delete_queue(history_stream_name(roger_client.namespace))
    await roger_client.enqueue(lost, roger_partition)
    await eventually(lambda: events(ledger, "end", lost.id), timeout=15)  # the job itself ran
    await eventually(lambda: "job history: dropping events" in node.log(), timeout=15)
    assert _dropped(port) >= 1

    # The next batch declares the stream again.
    await roger_client.enqueue(after, roger_partition)
    await _until(roger_client, after.id, "succeeded")
    # Its start was in the refused batch (its end too, unless a batch boundary fell between).
    assert [e.kind for e in await roger_client.job_events(lost.id)] in ([], ["succeeded"])
    assert node.log().count("job history: dropping events") == 1
    assert "job history is written again" in node.log()


def _dropped(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^roger_history_dropped_events_total (\S+)$", text, re.MULTILINE)
    assert found, text
    return float(found.group(1))


async def test_history_has_a_connection_of_its_own_whose_loss_leaves_the_nodes_jobs_alone(
    node_factory: NodeFactory,
    roger_client: Client,
    roger_partition: str,
    roger_management: Management,
    ledger: Path,
) -> None:
    """A stream can refuse an append by closing the whole connection ("Stream not found" while
    a RabbitMQ cluster starts its members): on the node's connection, that requeued every
    running job. The recorder has its own connection; closing it stops no job."""
    node = await node_factory.start(jobs="tests.jobs")
    await roger_client.start_partition(roger_partition, {"default": 2})
    first = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue(first, roger_partition)
    await _until(roger_client, first.id, "succeeded")

    async def history_connection() -> str:
        names = await roger_management.connection_names()
        found = [c for c, given in names.items() if given == f"{node.name} history"]
        assert len(found) == 1, names
        return found[0]

    closed = await eventually(history_connection, timeout=15)
    running = jobs.Record.create({"ledger": str(ledger), "sleep": 3})
    await roger_client.enqueue(running, roger_partition)
    await eventually(lambda: events(ledger, "start", running.id), timeout=15)
    assert await roger_management._delete(f"/api/connections/{quote(closed, safe='')}")
    await eventually(lambda: events(ledger, "end", running.id), timeout=15)
    assert events(ledger, "start", running.id) == events(ledger, "start", running.id)[:1]  # ran once
    assert events(ledger, "stopped") == [] and "lost the connection" not in node.log()
    # The recorder reconnects on its own: the running job's end, or the next job, is recorded.
    after = jobs.Record.create({"ledger": str(ledger)})
    await roger_client.enqueue(after, roger_partition)
    await _until(roger_client, after.id, "succeeded")
    assert await eventually(history_connection, timeout=15) != closed
