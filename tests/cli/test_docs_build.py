"""`scripts/docs` builds the API reference from the docstrings in one command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_scripts_docs_builds_the_api_reference_into_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "site"
    done = subprocess.run(
        [str(ROOT / "scripts" / "docs"), str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"API reference in {out}/index.html" in done.stderr
    package = (out / "roger_cluster.html").read_text()
    for name in ("Client", "Job", "JobContext", "PartitionInfo", "TlsFiles", "RogerError"):
        assert f'id="{name}"' in package, name
    assert "Where and how this run happens" in package  # a docstring, rendered
    assert (out / "roger_cluster" / "testing.html").is_file()
    assert (out / "index.html").is_file()
    assert not (out / "roger_cluster" / "broker.html").exists()  # internals stay out
