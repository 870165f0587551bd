"""The documentation holds together: links resolve, cited docs exist, the README stays short.

Relative links in README.md and docs/ must name a file (and heading) that exists; code
cites the repository's own docs, never a document outside it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
CODE = sorted(p for d in ("reconciler", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py"))

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOC_PATH = re.compile(r"\bdocs/[\w./-]*\w\.md\b")


def _prose(text: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path: Path) -> list[str]:
    targets = LINK.findall(_prose(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert broken == []


def test_cited_docs_exist() -> None:
    missing = {
        f"{path.relative_to(ROOT)}: {cited}"
        for path in [*CODE, *DOCS]
        for cited in DOC_PATH.findall(path.read_text(encoding="utf-8"))
        if not (ROOT / cited).is_file()
    }
    assert sorted(missing) == []


def test_code_cites_no_document_outside_the_repository() -> None:
    outside = "DESIGN " + "\N{SECTION SIGN}"
    citing = [
        str(path.relative_to(ROOT)) for path in CODE if outside in path.read_text(encoding="utf-8")
    ]
    assert citing == []


def test_readme_is_short_and_starts_with_the_set_up() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    first_screen = "\n".join(lines[:40])
    assert "make run" in first_screen
    assert "make test" in first_screen
    assert len(lines) <= 250


def test_the_link_checker_catches_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## Some `thing`, here\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#some-thing-here) [gone](c.md) `[code](d.md)`\n"
        "```\n[fenced](e.md)\n```\n[web](https://example.com)\n",
        encoding="utf-8",
    )
    assert _links(page) == ["a.md#some-thing-here", "c.md"]
    assert _anchors(tmp_path / "a.md") == {"title", "some-thing-here"}
