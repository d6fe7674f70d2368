"""Every relative link in the README and docs/ leads to a file that exists, and
every #anchor to a heading in it: the guide's table of contents cannot rot.
Links to other sites are not allowed in the docs (they rot on their own)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page."""
    found = set()
    for line in page.read_text().splitlines():
        if heading := re.match(r"#+ (.+)", line):
            found.add(re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-"))
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # code is not links
    return LINK.findall(text)


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in links(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if re.match(r"[a-z]+://", target):
                broken.append(f"{page.name}: {target} (a link to another site)")
            elif not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_index_lists_every_page_of_the_guide() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    missing = sorted(p for p in pages if f"]({p}" not in index)
    assert not missing, f"docs/index.md does not link {', '.join(missing)}"
    assert "](docs/index.md)" in (ROOT / "README.md").read_text()
