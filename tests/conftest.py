"""Fixtures shared by unit and integration tests: tiny random checkpoints, built offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fixtures.tiny_checkpoints import (
    build_tiny_bert_multilabel,
    build_tiny_distilbert_sentiment,
)

# User ids are hashed with an HMAC keyed by this (models/privacy.py); outside development mode
# the service refuses to start without it. Tests that need it unset delete it.
os.environ.setdefault("SOCIALPLAY_HASH_SECRET", "test-hash-secret-0123456789abcdef")


@pytest.fixture(scope="session")
def tiny_moderation_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny toxic-bert-shaped multi-label checkpoint (6 labels, 64 positions)."""
    return build_tiny_bert_multilabel(tmp_path_factory.mktemp("tiny_moderation"))


@pytest.fixture(scope="session")
def tiny_sentiment_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SST-2-shaped DistilBERT checkpoint with labels (NEGATIVE, POSITIVE)."""
    return build_tiny_distilbert_sentiment(tmp_path_factory.mktemp("tiny_sentiment"))


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP (model, BPE tokenizer, image processor) saved offline."""
    from tests.fixtures.images import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(autouse=True)
def _fresh_settings() -> None:
    """Settings are read once per process (``get_settings``); tests change the environment."""
    from configs.settings import get_settings

    get_settings.cache_clear()
