"""Sections 2 and 4: figures other scripts measure, folded into the table.

- Peers: `benchmarks/peers/run.py --json` (Celery and Dramatiq in their own venv, which it sets
  up from PyPI the first time), on the same broker and with the same N and prefetch as ours.
- Growth: `benchmarks/bench_growth.py --json`, when the file exists. It prints a list of rows
  `{"section", "figure", "value", "unit"}` (or an object with `rows`). `--quick`, `--amqp-url`
  and `--etcd` are passed on when its `--help` offers them (the environment carries the servers
  too, as ROGER_AMQP_URL and ROGER_ETCD). Absent, the section says so.

Both run as subprocesses: their progress goes to our stderr, their JSON comes on their stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from .report import Row
from .rig import REPO, Options, child_env

PEERS = REPO / "benchmarks" / "peers" / "run.py"
GROWTH = REPO / "benchmarks" / "bench_growth.py"
GROWTH_TIMEOUT = 1800.0
STOP_TIMEOUT = 60.0  # SIGTERM to exit: peers/run.py stops its workers and deletes its queues


@dataclass
class Peer:
    """One peer case: its medians."""

    case: str
    label: str
    drain: float
    enqueue: float


@dataclass
class PeerFigures:
    rows: list[Row] = field(default_factory=list)
    peers: dict[str, Peer] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def fastest(self, cases: tuple[str, ...], figure: str) -> Peer | None:
        """The case among `cases` with the highest `figure` ("drain" or "enqueue")."""
        found = [p for c, p in self.peers.items() if c in cases]
        return max(found, key=lambda p: float(getattr(p, figure)), default=None)


async def run_json(argv: list[str], options: Options, timeout: float) -> tuple[int, Any]:
    """Run a script; its exit code and the JSON it printed on stdout (stderr passes through)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        env=child_env(options),
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:  # timed out, or we were stopped: let it clean up first
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
    assert process.returncode is not None
    try:
        return process.returncode, json.loads(out.decode())
    except ValueError as e:
        raise RuntimeError(f"{argv[1]} exited {process.returncode} without JSON on stdout ({e})") from None


async def peers(options: Options) -> PeerFigures:
    figures = PeerFigures()
    argv = [
        sys.executable, str(PEERS), "--json", "--jobs", str(options.jobs),
        "--rounds", str(options.peer_rounds), "--prefetch", str(options.prefetch),
        "--cases", ",".join(options.peer_cases),
    ]  # fmt: skip
    try:
        code, report = await run_json(argv, options, 900.0 + options.jobs * options.peer_rounds / 10)
    except (RuntimeError, OSError, TimeoutError) as e:
        figures.errors.append(f"peers: {e or type(e).__name__}")
        figures.rows.append(Row("Peers", "peers did not run", None, "", note=str(e)[:200]))
        return figures
    if code != 0 or not report.get("counted_ok"):
        figures.errors.append(f"peers: exit {code}, counted_ok {report.get('counted_ok')}")
    for result in report["results"]:
        peer = Peer(
            result["case"],
            result["label"],
            result["drain_jobs_per_s"],
            result["enqueue_confirmed_jobs_per_s"],
        )
        figures.peers[peer.case] = peer
        note = f"prefetch {result['prefetch_per_process']}/process"
        if result.get("threads_per_process"):
            note += f", {result['threads_per_process']} threads"
        counted = f"{result['executions']:,} of {result['jobs']:,} counted"
        figures.rows += [
            Row("Peers", f"{peer.label}: drain", peer.drain, "jobs/s", result["drain_worker_cpu_us_per_job"],
                note=f"{note}; {counted}"),
            Row("Peers", f"{peer.label}: enqueue, confirms, one at a time", peer.enqueue, "jobs/s",
                result["enqueue_publisher_cpu_us_per_job"]),
        ]  # fmt: skip
    return figures


async def growth_flags(options: Options) -> list[str]:
    """The flags bench_growth.py gets: --json, and those of ours that its --help offers."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(GROWTH), "--help", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=child_env(options),
    )  # fmt: skip
    try:
        text = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    offered = {
        "--quick": options.quick,
        "--amqp-url": options.amqp_url,
        "--etcd": options.etcd,  # "" (a private etcd of ours): let it start its own
    }
    flags = ["--json"]
    for flag, value in offered.items():
        if value and flag in text:
            flags += [flag] if value is True else [flag, str(value)]
    return flags


def growth_rows(report: Any) -> list[Row]:
    """bench_growth.py's rows as Growth rows; a section of its own names the figure's group."""
    rows = report.get("rows", []) if isinstance(report, dict) else report
    out = []
    for row in rows:
        value, group = row.get("value"), str(row.get("section") or "")
        figure = str(row.get("figure", "?"))
        out.append(
            Row(
                "Growth",
                figure if group.lower() in ("", "growth") else f"{group}: {figure}",
                None if value is None else float(value),
                str(row.get("unit", "")),
                cpu_us=row.get("cpu_us"),
                target=str(row.get("target") or ""),
                passed=row.get("passed"),
                note=str(row.get("note") or ""),
            )
        )
    return out


async def growth(options: Options) -> tuple[list[Row], list[str]]:
    """The Growth section's rows and any error; a note row when bench_growth.py is absent."""
    if not options.growth:
        return [], []
    if not GROWTH.exists():
        return [Row("Growth", "skipped: benchmarks/bench_growth.py is not in this tree", None, "")], []
    try:
        argv = [sys.executable, str(GROWTH), *await growth_flags(options)]
        code, report = await run_json(argv, options, GROWTH_TIMEOUT)
        rows = growth_rows(report)
    except (RuntimeError, OSError, TimeoutError, AttributeError, TypeError, ValueError) as e:
        return [Row("Growth", "bench_growth.py failed", None, "", note=str(e)[:200])], [f"growth: {e}"]
    return rows, ([] if code == 0 else [f"growth: bench_growth.py exited {code}"])
