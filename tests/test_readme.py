"""The README lists every doc in its documentation table and every package in its layout."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_every_doc_is_in_the_documentation_table():
    table = README.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", table))
    docs = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert docs - linked == set(), "docs missing from README's documentation table"
    assert linked - docs == set(), "README links docs that do not exist"


def test_every_package_and_top_level_folder_is_in_the_layout():
    layout = README.split("## Layout", 1)[1].split("\n## ", 1)[0]
    packages = [p.parent.name for p in (REPO / "rest_em").glob("*/__init__.py")]
    missing = [f"rest_em/{name}" for name in packages if f"{name}/" not in layout]
    tops = [p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in ("runs",)
            and (p / "__init__.py").exists() or p.name in ("configs", "docs", "tests", "benchmarks", "examples")]
    missing += [name for name in tops if (REPO / name).is_dir() and f"{name}/" not in layout]
    assert missing == []
