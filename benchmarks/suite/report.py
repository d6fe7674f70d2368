"""The one table: its rows, the machine it was measured on, and how it is printed.

A row is one figure (`value` in `unit`), or one comparison with a target (`unit` "x": a ratio,
or "ms"/"s" against a bound). Rows keep the order in which `SECTIONS` lists their sections, so
the table reads the same whichever order the suite measured them in. The JSON form is a list of
the same rows with the keys `section`, `figure`, `value`, `unit` (as `bench_growth.py` prints
them) and `cpu_us`, `target`, `passed`, `note` where they apply.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SECTIONS = ("Ceiling", "Peers", "roger_cluster", "Growth")


@dataclass
class Row:
    """One line of the table."""

    section: str
    figure: str
    value: float | None
    unit: str
    cpu_us: float | None = None  # CPU the measured process(es) spent per job
    target: str = ""
    passed: bool | None = None
    note: str = ""

    @property
    def result(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "FAIL")


def check(section: str, figure: str, value: float | None, unit: str, target: str, passed: bool | None) -> Row:
    """A comparison row; with `value` None (a figure missing) it neither passes nor fails."""
    return Row(section, figure, value, unit, target=target, passed=None if value is None else passed)


def ratio(value: float | None, against: float | None) -> float | None:
    return value / against if value is not None and against else None


@dataclass
class Machine:
    """Where and when the figures were measured: they mean nothing without it."""

    cpu: str
    cores: int
    memory_gib: float
    python: str
    rabbitmq: str
    etcd: str
    load_before: tuple[float, ...]
    load_after: tuple[float, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        load = " / ".join(
            " ".join(f"{x:.2f}" for x in loads) for loads in (self.load_before, self.load_after)
        )
        extra = "".join(f", {k} {v}" for k, v in self.extra.items())
        return [
            f"machine: {self.cpu}, {self.cores} cores, {self.memory_gib} GiB RAM, {platform.system()}"
            f" {platform.release()}",
            f"Python {self.python}, RabbitMQ {self.rabbitmq}, etcd {self.etcd}{extra}",
            f"load average (1, 5, 15 min) before / after the run: {load}",
        ]


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return models[0] if models else platform.processor() or "unknown CPU"


def memory_gib() -> float:
    try:
        words = Path("/proc/meminfo").read_text().split()
        return round(int(words[words.index("MemTotal:") + 1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return 0.0


def etcd_version(endpoints: str) -> str:
    """What the first etcd endpoint's /version says (plain HTTP; "unknown" otherwise)."""
    first = endpoints.split(",")[0].strip()
    url = first if "://" in first else f"http://{first}"
    try:
        with urllib.request.urlopen(f"{url}/version", timeout=2) as reply:
            return str(json.loads(reply.read()).get("etcdserver", "unknown"))
    except (OSError, ValueError):
        return "unknown"


def machine(rabbitmq: str, etcd: str, load_before: tuple[float, ...]) -> Machine:
    return Machine(
        cpu=cpu_model(),
        cores=os.cpu_count() or 0,
        memory_gib=memory_gib(),
        python=sys.version.split()[0],
        rabbitmq=rabbitmq,
        etcd=etcd,
        load_before=load_before,
    )


def ordered(rows: list[Row]) -> list[Row]:
    """Rows grouped by section in the table's order; within a section, as measured."""
    rank = {name: i for i, name in enumerate(SECTIONS)}
    return sorted(rows, key=lambda r: rank.get(r.section, len(SECTIONS)))


def _value(row: Row) -> str:
    if row.value is None:
        return "-"
    if row.unit == "x":
        return f"{row.value:.2f}"
    return f"{row.value:,.0f}" if abs(row.value) >= 100 else f"{row.value:,.1f}"


def _cells(row: Row) -> list[str]:
    cpu = "" if row.cpu_us is None else f"{row.cpu_us:,.0f}"
    target = row.target + (f" ({row.note})" if row.note and row.target else row.note)
    return [row.figure, _value(row), row.unit, cpu, target, row.result]


HEADER = ["figure", "value", "unit", "CPU us/job", "target / note", "result"]
RIGHT = {1, 3}  # numeric columns


def text(rows: list[Row], heading: list[str]) -> str:
    """An aligned plain-text table, a title line per section."""
    body = [_cells(r) for r in ordered(rows)]
    widths = [max(len(c[i]) for c in [HEADER, *body]) for i in range(len(HEADER))]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if i in RIGHT else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    out = [*heading, "", line(HEADER), line(["-" * w for w in widths])]
    section = None
    for row, cells in zip(ordered(rows), body, strict=True):
        if row.section != section:
            section = row.section
            out.append(f"{section}:")
        out.append(line(cells))
    return "\n".join(out)


def markdown(rows: list[Row], heading: list[str]) -> str:
    """The same table in Markdown, to paste into docs/performance.md."""
    out = [*(f"{h}  " for h in heading), ""]
    out.append("| " + " | ".join(HEADER) + " |")
    out.append("|" + "|".join("---:" if i in RIGHT else "---" for i in range(len(HEADER))) + "|")
    section = None
    for row in ordered(rows):
        if row.section != section:
            section = row.section
            out.append(f"| **{section}** |" + " |" * (len(HEADER) - 1))
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in _cells(row)) + " |")
    return "\n".join(out)


def as_json(rows: list[Row], host: Machine, options: dict[str, Any], errors: list[str]) -> str:
    report = {
        "benchmark": "roger_cluster suite",
        "machine": asdict(host),
        "options": options,
        "ok": not errors,  # every phase ran, every job counted exactly once
        "errors": errors,
        "rows": [asdict(r) | {"result": r.result} for r in ordered(rows)],
    }
    return json.dumps(report, indent=2)
