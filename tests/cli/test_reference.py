"""docs/cli-reference.md is what the parsers print now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from roger_cluster.cli import reference

REFERENCE = Path(__file__).parents[2] / "docs" / "cli-reference.md"
REGENERATE = ".venv/bin/python -m roger_cluster.cli.reference > docs/cli-reference.md"


def test_the_committed_cli_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == reference.render(), (
        f"docs/cli-reference.md differs from the parsers of roger-node and rogerctl;"
        f" regenerate it with: {REGENERATE}"
    )


def test_the_reference_covers_every_command_with_its_help() -> None:
    text = reference.render()
    for path in ("roger-node", "rogerctl partition start", "rogerctl job queued", "rogerctl completion"):
        assert f"\n## {path}\n" in text
    assert "A peek is not free." in text  # a subcommand's own description
    assert "Create or reconfigure" in text  # a one-line help, turned into a description


def test_the_reference_ignores_the_callers_environment() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "roger_cluster.cli.reference"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin", "ROGER_ETCD": "elsewhere:1", "COLUMNS": "40"},
    )
    assert done.stdout == REFERENCE.read_text()
