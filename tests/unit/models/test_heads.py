"""The MiniLM heads: checkpoint round trip, label mapping and the serving result shapes."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from configs.nodes import ModelNodeConfig, ModerationModelSpec, SentimentModelSpec
from configs.pipelines import TextHeadJobConfig
from models.answers import ModelInfo
from models.heads import (
    MODERATION_HEAD_LABELS,
    SENTIMENT_HEAD_LABELS,
    HeadConfig,
    HeadModerator,
    HeadSentiment,
    TextHead,
    davidson_targets,
    feature_dim,
    head_inputs,
    load_head,
    save_head,
    sentiment_class,
    shared_profanity,
)
from models.text_classifier import load_text_classifier


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
    scores: dict[str, float] = asdict(row.scores)
    assert set(scores) == {"positive", "negative", "neutral"}
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert row.label == max(scores, key=scores.__getitem__)
    assert row.confidence == pytest.approx(scores[row.label])
    assert row.compound is None
    assert model.info.version == "heads-sentiment/2"
    assert model.info.name == "heads-sentiment"


def test_a_head_of_the_wrong_task_is_refused(tmp_path: Path) -> None:
    directory = _head(tmp_path, "sentiment")
    with pytest.raises(ValueError, match="needs a moderation head"):
        HeadModerator.load(directory, "cpu", embedder=FakeEmbedder())  # type: ignore[arg-type]


def test_loaders_know_kind_head(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='kind "head" needs a checkpoint'):
        load_text_classifier("moderation", "head")
    with pytest.raises(ValueError, match='kind "head" needs a checkpoint'):
        load_text_classifier("sentiment", "head", None)


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


# --- stacked heads: MiniLM embedding + alt-profanity-check's score as inputs -------------

PROFANE = [
    "shut up you fucking idiot",
    "this is bullshit, screw you asshole",
    "you stupid bitch",
    "what a piece of shit, fuck off",
    "damn you dumb ass loser",
    "fuck this shit",
]
CLEAN = [
    "have a lovely afternoon at the park",
    "the train arrives at nine tomorrow",
    "thanks for the recipe, it was great",
    "we planted tomatoes in the garden",
    "the meeting moved to thursday",
    "happy birthday to my sister",
]


def _stacked_config(hidden_dim: int = 16) -> HeadConfig:
    features = ("embedding", "profanity")
    return HeadConfig(
        task="moderation",
        labels=MODERATION_HEAD_LABELS,
        input_dim=feature_dim(features),
        hidden_dim=hidden_dim,
        features=features,
    )


def _stacked_head(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_head(tmp_path / "stacked", TextHead(_stacked_config()), version="stacked-1")


def test_head_inputs_stack_the_profanity_score_after_the_embedding() -> None:
    texts = ["fuck off you idiot", "a calm day at the lake"]
    embeddings = FakeEmbedder().embed(texts)
    inputs = head_inputs(("embedding", "profanity"), texts, embeddings)
    assert inputs.shape == (2, 384 + 2) and inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs[:, :384], embeddings)
    p = np.array([row["offensive"] for row in shared_profanity().predict_batch(texts)])
    np.testing.assert_allclose(inputs[:, 384], p, rtol=1e-6)
    # The logit column is monotone in p: the profane text is on the positive side.
    assert inputs[0, 385] > 0 > inputs[1, 385]
    # Embedding alone: the vectors themselves, untouched.
    np.testing.assert_array_equal(head_inputs(("embedding",), texts, embeddings), embeddings)
    with pytest.raises(ValueError, match=r"expected \(3, 384\)"):
        head_inputs(("embedding", "profanity"), [*texts, "x"], embeddings)
    with pytest.raises(ValueError, match="unknown head features"):
        head_inputs(("embedding", "char_ngrams"), texts, embeddings)


def test_stacked_checkpoint_round_trip_predicts_the_same(tmp_path: Path) -> None:
    directory = _stacked_head(tmp_path)
    saved = json.loads((directory / "head_config.json").read_text())
    assert saved["features"] == ["embedding", "profanity"] and saved["input_dim"] == 386
    texts = ["you stupid bitch", "see you at lunch", "damn this traffic"]
    embedder = FakeEmbedder()
    first = HeadModerator.load(directory, "cpu", embedder=embedder)  # type: ignore[arg-type]
    again = HeadModerator.load(directory, "cpu", embedder=embedder)  # type: ignore[arg-type]
    batch = first.predict_batch(texts)
    assert len(batch) == len(texts)
    assert again.predict_batch(texts) == batch
    singles = [first.predict_batch([text])[0] for text in texts]
    for single, row in zip(singles, batch, strict=True):
        assert single == pytest.approx(row, abs=1e-6)
    # The pipeline's scoring path (LoadedHead.probabilities) gives the serving numbers.
    loaded = load_head(directory)
    direct = loaded.probabilities(texts, embedder.embed(texts))
    assert direct[:, 1].tolist() == pytest.approx([row["offensive"] for row in batch], abs=1e-6)


def test_old_embedding_only_checkpoint_still_loads(tmp_path: Path) -> None:
    directory = _head(tmp_path, "moderation")
    config = json.loads((directory / "head_config.json").read_text())
    # A checkpoint written before heads had input features: no "features" key at all.
    config.pop("features")
    (directory / "head_config.json").write_text(json.dumps(config))
    loaded = load_head(directory)
    assert loaded.config.features == ("embedding",) and loaded.config.input_dim == 384
    model = HeadModerator.load(directory, "cpu", embedder=FakeEmbedder())  # type: ignore[arg-type]
    assert model._profanity is None  # an embedding-only head never loads profanity-check
    assert len(model.predict_batch(["one", "two"])) == 2


def test_a_config_whose_input_dim_does_not_fit_its_features_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="input_dim=384 but features"):
        HeadConfig(
            task="moderation", labels=MODERATION_HEAD_LABELS, features=("embedding", "profanity")
        )
    directory = _stacked_head(tmp_path)
    config = json.loads((directory / "head_config.json").read_text())
    config["features"] = ["embedding", "profanity", "profanity"]
    (directory / "head_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="repeat a name"):
        load_head(directory)
    with pytest.raises(ValueError, match="repeats a name"):
        TextHeadJobConfig.model_validate(
            {
                "task": "moderation",
                "data_paths": ["x.csv"],
                "features": ["embedding", "embedding"],
                "mlflow": {"registered_model_name": "m"},
            }
        )


def test_a_tiny_fit_scores_a_profane_sentence_above_a_clean_one(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    texts = PROFANE + CLEAN
    config = _stacked_config(hidden_dim=8)
    inputs = torch.from_numpy(head_inputs(config.features, texts, embedder.embed(texts)))
    # Offensive target 1 for the profane rows; hate_speech 0 everywhere.
    targets = torch.tensor([[0.0, 1.0]] * len(PROFANE) + [[0.0, 0.0]] * len(CLEAN))
    torch.manual_seed(0)
    module = TextHead(config)
    optimizer = torch.optim.AdamW(module.parameters(), lr=0.01)
    loss_fn = torch.nn.BCEWithLogitsLoss()  # the pipeline's loss for moderation heads
    for _ in range(150):
        optimizer.zero_grad()
        loss_fn(module(inputs), targets).backward()
        optimizer.step()
    directory = save_head(tmp_path / "fitted", module.eval())
    model = HeadModerator.load(directory, "cpu", embedder=embedder)  # type: ignore[arg-type]
    # Unseen sentences: FakeEmbedder's vectors are noise for them, so only a head that reads
    # the stacked profanity score can tell them apart.
    profane, clean = model.predict_batch(
        ["get lost you fucking moron", "the library opens at ten on sundays"]
    )
    assert profane["offensive"] > 0.5 > clean["offensive"]
    assert profane["offensive"] - clean["offensive"] > 0.3
