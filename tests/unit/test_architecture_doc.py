"""docs/architecture.md names real code: every `file.py:Name` or `file.py:Class.method`
in it exists, so the walk of a job stays true when code moves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "architecture.md"
HOP = re.compile(r"`([\w/]+\.py):([\w.]+)`")


def _defined(path: Path) -> set[str]:
    """Top-level names, and `Class.member` for what a class defines, in one module."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(f"{node.name}.{member.name}")
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_every_hop_in_the_architecture_page_names_existing_code() -> None:
    hops = HOP.findall(PAGE.read_text())
    assert len(hops) >= 20, "the walk of a job lost its file:function hops"
    missing = []
    for file, name in hops:
        path = ROOT / "roger_cluster" / file
        if not path.is_file() or name not in _defined(path):
            missing.append(f"{file}:{name}")
    assert missing == [], f"docs/architecture.md names code that does not exist: {missing}"
