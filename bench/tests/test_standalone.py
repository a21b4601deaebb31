"""bench/ stands apart: nothing in the product or its tests imports it, and it never imports
the test suite (it builds its own checkpoints and data)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCT_AND_TESTS = ("configs", "models", "storage", "deployments", "pipelines", "tests")


def _imported_top_levels(path: Path) -> set[str]:
    """Top-level package of every import in ``path``, function-level imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PRODUCT_AND_TESTS)
def test_the_product_and_its_tests_never_import_bench(package: str) -> None:
    importers = [
        str(path.relative_to(REPO_ROOT))
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if "bench" in _imported_top_levels(path)
    ]
    assert importers == [], f"these modules import bench; move what they need out: {importers}"


def test_bench_never_imports_the_test_suite() -> None:
    importers = [
        str(path.relative_to(REPO_ROOT))
        for path in sorted((REPO_ROOT / "bench").rglob("*.py"))
        if ".venv-" not in str(path) and "tests" in _imported_top_levels(path)
    ]
    assert importers == [], f"these bench modules import tests/: {importers}"
