"""Fixtures of the benchmark harness's own tests (``make bench-test``; not in ``make test``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.checkpoint import build_tiny_checkpoint

# The recommender hashes user ids of its impression log with a keyed hash (as in tests/).
os.environ.setdefault("SOCIALPLAY_HASH_SECRET", "bench-test-hash-secret-0123456789")


@pytest.fixture(scope="session")
def tiny_moderation_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random toxic-bert-shaped multi-label checkpoint (6 labels, 64 positions)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_moderation"))
