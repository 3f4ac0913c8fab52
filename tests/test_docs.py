"""The docs cannot drift: rendered tables equal what the results render now, and relative links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import tables

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PAGES = [path for path in tables.documents()]


def test_every_rendered_table_is_up_to_date() -> None:
    assert tables.stale() == [], "run: python -m benchmarks.tables"


def test_the_readme_shows_the_shipped_models_table() -> None:
    assert "<!-- table:shipped-models -->" in (tables.ROOT / "README.md").read_text()


def test_every_marked_block_names_a_known_table() -> None:
    for path in PAGES:
        names = set(re.findall(r"<!-- /?table:([\w-]+) -->", path.read_text()))
        assert names <= set(tables.TABLES), f"{path}: {names - set(tables.TABLES)}"


def test_a_stale_block_is_rewritten_once() -> None:
    stale = "<!-- table:precision -->\n| old |\n<!-- /table:precision -->\n"
    assert tables.render(stale) != stale
    assert tables.render(tables.render(stale)) == tables.render(stale)


def test_the_speed_table_counts_only_unquantized_variants_as_exact() -> None:
    assert tables.is_exact({"backend": "vllm", "options": {"dtype": "float32"}})
    assert not tables.is_exact({"backend": "transformers", "options": {"quantize": "int8-smooth"}})
    assert not tables.is_exact({"backend": "openvino", "options": {"weight_format": "int8", "dtype": "bfloat16"}})


def anchors(page: Path) -> set[str]:
    """The heading anchors GitHub gives a markdown page (lower case, punctuation dropped, spaces as dashes)."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(tables.ROOT)))
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = page.parent / path if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert broken == []
