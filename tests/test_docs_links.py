"""Every relative link in the README, docs/ and benchmarks/README.md resolves: to a file of the checkout
and, for ``page.md#anchor``, to a heading of that page (GitHub's anchor rules). Every ``benchmarks/...``
path a page names in backticks exists. The README stays a landing page: at most 200 lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").glob("*.md")])
README_MAX_LINES = 200

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
BENCHMARK_PATH = re.compile(r"`(benchmarks/[^`*{\s]+)`")  # not globs or braces


def _prose(text: str) -> str:
    """The page without its fenced code blocks (a link-like string in code is not a link)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``page``: lower case, punctuation dropped, spaces to hyphens,
    and a ``-1``, ``-2`` ... suffix on repeats."""
    seen: dict[str, int] = {}
    result = set()
    for line in _prose(page.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(_prose(page.read_text())) if not re.match(r"^[a-z]+:", target)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert page.exists(), f"{page} is missing"
    broken = []
    for target in links(page):
        path_part, _, anchor = target.partition("#")
        target_path = (page.parent / path_part).resolve() if path_part else page
        if not target_path.exists():
            broken.append(f"{target}: no file {target_path}")
        elif anchor and target_path.suffix == ".md" and anchor not in anchors(target_path):
            broken.append(f"{target}: no heading with anchor #{anchor} in {target_path.name}")
    assert not broken, f"{page.name}: broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_benchmark_file_exists(page):
    missing = [path for path in BENCHMARK_PATH.findall(page.read_text()) if not (ROOT / path).exists()]
    assert not missing, f"{page.name} names files that are not in benchmarks/: {missing}"


def test_readme_is_a_landing_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_anchor_rules_match_github():
    page = ROOT / "docs" / "reliability.md"
    assert "transient-nan-in-bf16-training" in anchors(page)
    assert "faces-a-64x64-dcgan-on-any-folder-of-images" in anchors(ROOT / "docs" / "usage.md")
