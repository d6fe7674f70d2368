"""docs/configuration.md names every flag of roger-node and rogerctl (subcommands
included) and every environment variable they read, so it cannot fall behind."""

from __future__ import annotations

import re
from pathlib import Path

from roger_cluster.cli import reference, tree

ROOT = Path(__file__).parents[2]
CONFIGURATION = ROOT / "docs" / "configuration.md"
VARIABLE = re.compile(r"\b(?:ROGER|NO)_[A-Z][A-Z_]*[A-Z]\b")


def flags() -> set[str]:
    return {
        name
        for root_name, root in reference.parsers().items()
        for _, parser in tree.walk(root_name, root)
        for option in tree.options(parser)
        for name in option.names
        if name.startswith("--") and name != "--help"
    }


def variables() -> set[str]:
    """Every ROGER_* / NO_COLOR the command-line code or its help texts mention."""
    found = set()
    for source in (ROOT / "roger_cluster" / "cli").glob("*.py"):
        found |= set(VARIABLE.findall(source.read_text()))
    found |= set(VARIABLE.findall(reference.render()))
    return found


def test_every_flag_is_documented_in_configuration_md() -> None:
    text = CONFIGURATION.read_text()
    missing = sorted(f for f in flags() if f"`{f}`" not in text)
    assert not missing, f"docs/configuration.md does not mention {', '.join(missing)}"


def test_every_environment_variable_is_documented_in_configuration_md() -> None:
    text = CONFIGURATION.read_text()
    found = variables()
    assert {"ROGER_AMQP_URL", "ROGER_AMQP_URL_FILE", "ROGER_ETCD_PASSWORD_FILE", "NO_COLOR"} <= found
    missing = sorted(v for v in found if f"`{v}`" not in text)
    assert not missing, f"docs/configuration.md does not mention {', '.join(missing)}"
