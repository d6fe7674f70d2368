"""The suite's parts without servers: the table, the Growth section, node labels, what jobs record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.peers import tally
from benchmarks.suite import jobs, main, others, ours, report
from benchmarks.suite.report import Row, check
from benchmarks.suite.rig import redact
from roger_cluster.job import JobContext

HOST = report.Machine("Test CPU", 2, 4.0, "3.11", "3.10.8", "3.4.23", (0.5, 0.4, 0.3), (0.6, 0.5, 0.4))

FAKE_GROWTH = """
import json, sys
if "--help" in sys.argv:
    print("usage: bench_growth.py [--json] [--quick] [--amqp-url URL]")
    sys.exit(0)
rows = [{"section": "partitions", "figure": "start 1000, 3 nodes", "value": 1.5, "unit": "s"},
        {"section": "Growth", "figure": "argv", "value": None, "unit": "", "note": " ".join(sys.argv[1:])}]
print(json.dumps({"rows": rows} if "--quick" in sys.argv else rows))
"""


def test_sections_print_in_the_table_order_whatever_the_order_of_work() -> None:
    rows = [
        Row("Growth", "RSS, 8 nodes", 52.0, "MiB"),
        Row("roger_cluster", "drain, 1 node", 8000.0, "jobs/s", cpu_us=120.4),
        check("roger_cluster", "  / bare consumer, ack each", 1.31, "x", ">= 1.2x", True),
        check("roger_cluster", "partition start p99", 140.0, "ms", "< 100 ms", False),
        Row("Ceiling", "bare publish", 4600.0, "jobs/s"),
    ]
    text = report.text(rows, ["heading"])
    titles = [line for line in text.splitlines() if line.endswith(":")]
    assert titles == ["Ceiling:", "roger_cluster:", "Growth:"]
    assert "8,000" in text and "1.31" in text and "120" in text
    assert [line.split()[-1] for line in text.splitlines() if "x  " in line or " ms " in line] == [
        "PASS",
        "FAIL",
    ]


def test_a_missing_figure_neither_passes_nor_fails() -> None:
    row = check("roger_cluster", "  / fastest peer drain", None, "x", ">= 2x", True)
    assert row.passed is None and row.result == ""
    assert "| - | x |" in report.markdown([row], [])


def test_markdown_has_a_row_per_section_and_escapes_pipes() -> None:
    rows = [Row("Peers", "Celery | solo", 3900.0, "jobs/s"), Row("Ceiling", "bare", 7000.0, "jobs/s")]
    lines = report.markdown(rows, ["title"]).splitlines()
    assert lines[0] == "title  "
    assert lines.index("| **Ceiling** | | | | | |") < lines.index("| **Peers** | | | | | |")
    assert any("Celery \\| solo" in line for line in lines)


def test_json_carries_the_rows_the_machine_and_the_errors() -> None:
    data = json.loads(
        report.as_json([Row("Ceiling", "bare", 1.0, "jobs/s")], HOST, {"jobs": 2}, ["peers: x"])
    )
    assert data["ok"] is False and data["errors"] == ["peers: x"]
    assert {"section", "figure", "value", "unit", "result"} <= data["rows"][0].keys()
    assert data["machine"]["cpu"] == "Test CPU"


async def test_growth_section_runs_bench_growth_with_the_flags_it_offers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "bench_growth.py"
    script.write_text(FAKE_GROWTH)
    monkeypatch.setattr(others, "GROWTH", script)
    options = main.options(main.parser().parse_args(["--quick", "--amqp-url", "amqp://h:1/"]))

    rows, errors = await others.growth(options)

    assert errors == []
    assert [(r.section, r.figure, r.value, r.unit) for r in rows][0] == (
        "Growth",
        "partitions: start 1000, 3 nodes",
        1.5,
        "s",
    )
    assert rows[1].note == "--json --quick --amqp-url amqp://h:1/"  # no --etcd: its --help has none


async def test_without_bench_growth_the_section_says_it_was_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(others, "GROWTH", tmp_path / "absent.py")
    options = main.options(main.parser().parse_args([]))
    rows, errors = await others.growth(options)
    assert errors == [] and len(rows) == 1 and rows[0].figure.startswith("skipped")


def test_suite_refuses_a_failover_figure_without_a_second_node() -> None:
    with pytest.raises(SystemExit):
        main.options(main.parser().parse_args(["--nodes", "1"]))


def test_the_broker_password_never_reaches_the_output() -> None:
    assert redact("amqp://bench:s3cret@10.0.0.2:5672/") == "amqp://bench:***@10.0.0.2:5672/"
    assert redact("amqp://10.0.0.2:5672/") == "amqp://10.0.0.2:5672/"


def test_node_k_carries_the_labels_of_every_drain_on_k_or_more_nodes() -> None:
    nodes = {k: set(ours.labels(k, 3)) for k in (1, 2, 3)}
    for count in (1, 2, 3):
        assert [k for k in (1, 2, 3) if f"n{count}" in nodes[k]] == list(range(1, count + 1))


async def test_jobs_leave_the_lines_the_suite_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(jobs.DIR_ENV, str(tmp_path))
    context = JobContext("bench_t", "default", "q1", enqueued_at=100.5)
    for job in (jobs.Count(7), jobs.CountSync(8), jobs.Stamp(9)):
        job.context = context
        result = job.perform(job.args)
        if result is not None:
            await result
    count = tally.read(jobs.tally_path(tmp_path, "bench_t"), 10)
    assert (count.executions, count.distinct) == (2, 2)
    [start] = jobs.read_stamps(jobs.stamps_path(tmp_path, "bench_t"))
    assert (start.index, start.enqueued, start.node) == (9, 100.5, "q1") and start.started > 100.5
