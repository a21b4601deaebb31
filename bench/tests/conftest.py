"""Fixtures of the benchmark harness's own tests (``make bench-test``; not in ``make test``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.checkpoint import build_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_moderation_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random toxic-bert-shaped multi-label checkpoint (6 labels, 64 positions)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_moderation"))
