"""The README stays short and lists every route, and every link between the docs (and every
docs/ page that code or config names) points at a page and heading that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 250

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_DOCS_MENTION = re.compile(r"\bdocs/[\w-]+\.md\b")


def _markdown_pages() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        match = re.match(r"(#{1,6}) (.+)", line)
        if in_fence or not match:
            continue
        slug = _slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _relative(path: Path) -> str:
    return path.resolve().relative_to(REPO_ROOT).as_posix()


def test_the_readme_is_short() -> None:
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; keep it at most {README_MAX_LINES} and move the detail "
        "to a topic page under docs/"
    )


@pytest.mark.parametrize("page", _markdown_pages(), ids=lambda page: page.name)
def test_links_point_at_pages_and_headings_that_exist(page: Path) -> None:
    broken: list[str] = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not ours to check offline
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part) if path_part else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no heading with that anchor)")
    assert broken == [], f"{page.name} has broken links: {broken}"


def test_docs_pages_named_in_code_and_config_exist() -> None:
    sources = [REPO_ROOT / "serve_config.yaml", *_markdown_pages()]
    for package in ("configs", "models", "storage", "deployments", "pipelines"):
        sources += sorted((REPO_ROOT / package).rglob("*.py"))
        sources += sorted((REPO_ROOT / package).rglob("*.yaml"))
    missing = sorted(
        f"{_relative(source)}: {mention}"
        for source in sources
        for mention in set(_DOCS_MENTION.findall(source.read_text(encoding="utf-8")))
        if not (REPO_ROOT / mention).is_file()
    )
    assert missing == [], f"these name a docs/ page that does not exist: {missing}"


def test_the_readme_route_table_lists_every_route_of_the_openapi_document() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Routes", 1)[1].split("\n## ", 1)[0]
    document = json.loads(
        (REPO_ROOT / "clients" / "typescript" / "openapi.json").read_text(encoding="utf-8")
    )
    missing = [
        path for path in document["paths"] if f"`{path}`" not in table and f" {path}`" not in table
    ]
    assert missing == [], f"README.md's route table lacks {missing}"
