"""The MiniLM heads: checkpoint round trip, label mapping and the serving result shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from configs.schemas import ModelNodeConfig, ModerationModelSpec, SentimentModelSpec
from models.device import ModelInfo
from models.heads import (
    MODERATION_HEAD_LABELS,
    SENTIMENT_HEAD_LABELS,
    HeadConfig,
    HeadModerator,
    HeadSentiment,
    TextHead,
    davidson_targets,
    load_head,
    save_head,
    sentiment_class,
)
from models.moderation import load_moderator
from models.sentiment import load_sentiment


class FakeEmbedder:
    """Deterministic 384-d vectors from a text's bytes: no MiniLM load in unit tests."""

    info = ModelInfo("fake-embedder", "0", "cpu", ())

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            rng = np.random.default_rng(sum(text.encode()) + len(text))
            vector = rng.normal(size=384).astype(np.float32)
            rows.append(vector / np.linalg.norm(vector))
        return np.stack(rows) if rows else np.zeros((0, 384), dtype=np.float32)


def _head(tmp_path: Path, task: str) -> Path:
    labels = MODERATION_HEAD_LABELS if task == "moderation" else SENTIMENT_HEAD_LABELS
    torch.manual_seed(0)
    module = TextHead(HeadConfig(task=task, labels=labels, hidden_dim=16))  # type: ignore[arg-type]
    return save_head(tmp_path / task, module, metrics={"macro_auc": 0.75}, version="v-test")


def test_save_load_round_trip_keeps_weights_config_and_metrics(tmp_path: Path) -> None:
    directory = _head(tmp_path, "moderation")
    loaded = load_head(directory)
    assert loaded.config.labels == MODERATION_HEAD_LABELS
    assert loaded.config.hidden_dim == 16
    assert loaded.metrics == {"macro_auc": 0.75}
    assert loaded.version == "v-test"
    original = torch.load(directory / "head.pt", weights_only=True)
    for key, value in loaded.module.state_dict().items():
        assert torch.equal(value, original[key])
    # The checkpoint says what it is: task and labels are in plain JSON.
    config = json.loads((directory / "head_config.json").read_text())
    assert config["task"] == "moderation" and config["labels"] == list(MODERATION_HEAD_LABELS)


def test_version_is_a_weight_hash_without_version_file(tmp_path: Path) -> None:
    directory = _head(tmp_path, "sentiment")
    (directory / "VERSION").unlink()
    first = load_head(directory).version
    assert len(first) == 12 and first == load_head(directory).version


def test_load_refuses_missing_files_and_bad_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="head_config.json"):
        load_head(tmp_path)
    directory = _head(tmp_path, "moderation")
    (directory / "head_config.json").write_text(json.dumps({"task": "vision", "labels": ["a"]}))
    with pytest.raises(ValueError, match="task='vision'"):
        load_head(directory)


def test_davidson_label_mapping_hate_is_also_offensive() -> None:
    classes = np.array([0, 1, 2])
    hard = davidson_targets(classes)
    assert hard.tolist() == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
    soft = davidson_targets(
        classes,
        hate_votes=np.array([2, 0, 0]),
        offensive_votes=np.array([1, 3, 1]),
        vote_counts=np.array([3, 3, 4]),
    )
    assert soft[0] == pytest.approx([2 / 3, 1.0])
    assert soft[1] == pytest.approx([0.0, 1.0])
    assert soft[2] == pytest.approx([0.0, 0.25])


def test_sentiment_cut_offs() -> None:
    ratings = np.array([2.0, 0.51, 0.5, 0.0, -0.5, -0.51, -3.0])
    labels = [SENTIMENT_HEAD_LABELS[i] for i in sentiment_class(ratings)]
    assert labels == [
        "positive",
        "positive",
        "neutral",
        "neutral",
        "neutral",
        "negative",
        "negative",
    ]


def test_moderator_predict_shapes(tmp_path: Path) -> None:
    directory = _head(tmp_path, "moderation")
    model = HeadModerator.load(directory, "cpu", embedder=FakeEmbedder())  # type: ignore[arg-type]
    results = model.predict_batch(["a calm day", "another text", "third"])
    assert len(results) == 3
    for row in results:
        assert set(row) == set(MODERATION_HEAD_LABELS)
        assert all(0.0 <= p <= 1.0 for p in row.values())
    assert model.predict_batch([]) == []
    assert model.info.labels == MODERATION_HEAD_LABELS
    assert model.info.version == "v-test"
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        model.predict_batch(["ok", 3])  # type: ignore[list-item]


def test_sentiment_predict_shapes_match_the_other_models(tmp_path: Path) -> None:
    directory = _head(tmp_path, "sentiment")
    model = HeadSentiment.load(
        directory,
        "cpu",
        name="heads-sentiment",
        version="heads-sentiment/2",
        embedder=FakeEmbedder(),  # type: ignore[arg-type]
    )
    (row,) = model.predict_batch(["fine"])
    scores: dict[str, Any] = row["scores"]  # type: ignore[assignment]
    assert set(scores) == {"positive", "negative", "neutral"}
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert row["label"] == max(scores, key=scores.__getitem__)
    assert row["confidence"] == pytest.approx(scores[str(row["label"])])
    assert model.info.version == "heads-sentiment/2"
    assert model.info.name == "heads-sentiment"


def test_a_head_of_the_wrong_task_is_refused(tmp_path: Path) -> None:
    directory = _head(tmp_path, "sentiment")
    with pytest.raises(ValueError, match="needs a moderation head"):
        HeadModerator.load(directory, "cpu", embedder=FakeEmbedder())  # type: ignore[arg-type]


def test_loaders_know_kind_head(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='kind "head" needs a checkpoint'):
        load_moderator("head")
    with pytest.raises(ValueError, match='kind "head" needs a checkpoint'):
        load_sentiment("head", None)


def test_head_spec_needs_exactly_one_source() -> None:
    ModerationModelSpec.model_validate({"kind": "head", "path": "/srv/head"})
    SentimentModelSpec.model_validate(
        {"kind": "head", "registry": {"model_name": "heads-sentiment", "alias": "serving"}}
    )
    with pytest.raises(ValueError, match="exactly one of moderation_model.path"):
        ModerationModelSpec.model_validate({"kind": "head"})
    with pytest.raises(ValueError, match="only used with kind"):
        SentimentModelSpec.model_validate(
            {"registry": {"model_name": "heads-sentiment", "version": 1}}
        )


def test_node_config_model_ref_needs_alias_or_version() -> None:
    ref = ModelNodeConfig.model_validate({"model": {"model_name": "m", "version": 3}}).model
    assert ref is not None and ref.version == 3
    with pytest.raises(ValueError, match="set exactly one of them"):
        ModelNodeConfig.model_validate({"model": {"model_name": "m"}})
    with pytest.raises(ValueError, match="set exactly one of them"):
        ModelNodeConfig.model_validate({"model": {"model_name": "m", "alias": "a", "version": 1}})
