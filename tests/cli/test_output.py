"""rogerctl's output helpers: colours only where asked for or on a terminal,
progress only on a terminal. No servers needed."""

from __future__ import annotations

import io
import os

import pytest

from roger_cluster.cli import color
from roger_cluster.cli.output import Output
from roger_cluster.cli.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("choice", "tty", "env", "expected"),
    [
        ("auto", True, {}, True),
        ("auto", False, {}, False),
        ("auto", True, {"NO_COLOR": "1"}, False),
        ("auto", True, {"NO_COLOR": ""}, True),  # no-color.org: only a non-empty value counts
        ("auto", True, {"TERM": "dumb"}, False),
        ("always", False, {"NO_COLOR": "1"}, True),  # the flag wins over the environment
        ("never", True, {}, False),
    ],
)
def test_colour_is_wanted_on_a_terminal_unless_no_color_or_the_flag_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, choice: str, tty: bool, env: dict[str, str], expected: bool
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stream = Terminal() if tty else io.StringIO()
    assert color.wanted(choice, stream) is expected


def test_a_coloured_table_stays_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [["a", "draining", "yes", 3], ["bb", "active", "no", 0]]
    Output(json_mode=False, color=True).table(["NAME", "STATE", "PAUSED", "BURIED"], rows, None)
    coloured = capsys.readouterr().out
    Output(json_mode=False, color=False).table(["NAME", "STATE", "PAUSED", "BURIED"], rows, None)
    plain = capsys.readouterr().out
    assert "\x1b[33mdraining\x1b[0m" in coloured and "\x1b[31m3\x1b[0m" in coloured
    assert "\x1b" not in plain
    stripped = coloured
    for code in ("\x1b[0m", "\x1b[1m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[2m"):
        stripped = stripped.replace(code, "")
    assert stripped == plain


def test_an_empty_table_prints_its_headers(capsys: pytest.CaptureFixture[str]) -> None:
    Output(json_mode=False).table(["ID", "CLASS"], [], [])
    assert capsys.readouterr().out == "ID  CLASS\n"


def test_json_is_never_coloured(capsys: pytest.CaptureFixture[str]) -> None:
    Output(json_mode=True, color=True).table(["STATE"], [["draining"]], [{"state": "draining"}])
    assert "\x1b" not in capsys.readouterr().out


def test_progress_is_silent_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    with Progress("purging q", stream) as progress:
        for done in range(1, 101):
            progress(done, 100)
    assert stream.getvalue() == ""


def test_progress_rewrites_one_line_and_wipes_it_at_the_end() -> None:
    stream = Terminal()
    with Progress("purging q", stream) as progress:
        progress(1, 3)
        progress(3, 3)  # the last step is always shown
    text = stream.getvalue()
    assert "\n" not in text and os.linesep not in text
    assert "\rpurging q: 1 of 3 (33%)" in text
    assert "\rpurging q: 3 of 3 (100%)" in text
    assert text.endswith("\r" + " " * len("purging q: 3 of 3 (100%)") + "\r")


def test_a_report_is_a_line_in_a_log_and_in_place_on_a_terminal() -> None:
    log, terminal = io.StringIO(), Terminal()
    for stream in (log, terminal):
        with Progress("", stream) as line:
            line.report("draining p: 0 of 2 node(s) done; waiting for a, b")
            line.report("draining p: 1 of 2 node(s) done; waiting for b")
    assert log.getvalue().splitlines() == [
        "draining p: 0 of 2 node(s) done; waiting for a, b",
        "draining p: 1 of 2 node(s) done; waiting for b",
    ]
    assert "\n" not in terminal.getvalue()
    assert "\rdraining p: 1 of 2 node(s) done; waiting for b" in terminal.getvalue()
