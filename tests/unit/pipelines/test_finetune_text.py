"""The LoRA fine-tuning job without Ray: config checks, the training loop on a tiny
synthetic set over a tiny 384-wide base, and the goal metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from configs.pipelines import FinetuneTextJobConfig, load_finetune_job_config
from models.device import checkpoint_version
from models.heads import SENTIMENT_HEAD_LABELS
from models.lora_text import LoraSentiment, LoraTextConfig, build_model, save_lora_model
from pipelines.data import LabelledTexts
from pipelines.evaluation import task_metrics
from pipelines.finetune_text import (
    fit_lora,
    positive_vs_negative_auc,
    score_rows,
    tokenise,
)
from tests.fixtures.tiny_checkpoints import build_tiny_minilm_base

REPO = Path(__file__).resolve().parents[3]
POSITIVE, NEGATIVE, NEUTRAL = (SENTIMENT_HEAD_LABELS.index(n) for n in SENTIMENT_HEAD_LABELS)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core box, 2 threads spin-wait on each other and a
    tiny model's step takes ~20x longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _job(**overrides: Any) -> FinetuneTextJobConfig:
    fields: dict[str, Any] = {
        "task": "sentiment",
        "data_paths": ["unused.txt"],
        "mlflow": {"registered_model_name": "lora-test"},
        "epochs": 3,
        "batch_size": 8,
        "learning_rate": 0.01,
        "head_learning_rate": 0.05,
        "eval_every_steps": 4,
        "early_stopping_patience": 50,
        "warmup_fraction": 0.0,
    }
    fields.update(overrides)
    return FinetuneTextJobConfig.model_validate(fields)


def _synthetic(count: int, seed: int) -> LabelledTexts:
    """Made-up sentences: 'good' words positive, 'bad' words negative, others neutral."""
    rng = np.random.default_rng(seed)
    words = {
        POSITIVE: ["love", "lovely", "wonderful", "happy", "great", "amazing"],
        NEGATIVE: ["hate", "awful", "terrible", "sad", "worst", "bad"],
        NEUTRAL: ["table", "river", "paper", "number", "water", "city"],
    }
    classes = rng.integers(0, 3, size=count)
    texts = [
        f"the {rng.choice(words[int(c)])} {rng.choice(words[NEUTRAL])} {rng.choice(words[int(c)])}"
        for c in classes
    ]
    return LabelledTexts(
        texts, classes.astype(np.int64), classes.astype(np.int64), SENTIMENT_HEAD_LABELS
    )


def test_shipped_job_files_validate() -> None:
    for name in ("finetune_sentiment.yaml", "finetune_moderation.yaml"):
        config = load_finetune_job_config(REPO / "configs" / "pipelines" / name)
        assert config.max_length == 64
        assert config.batch_size == 32


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"features": ["profanity", "embedding"]}, "features"),
        ({"lora_layers": [6]}, "lora_layers"),
        ({"lora_targets": ["pooler"]}, "lora_targets"),
        ({"test_fraction": 0.45, "validation_fraction": 0.4}, "test_fraction"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_job_config_refuses_bad_values(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        _job(**overrides)


def test_fit_lora_learns_a_tiny_task_and_keeps_the_best_state(tmp_path: Path) -> None:
    base = build_tiny_minilm_base(tmp_path / "base")
    model_config = LoraTextConfig(
        task="sentiment",
        labels=SENTIMENT_HEAD_LABELS,
        rank=4,
        max_length=16,
        base_version=checkpoint_version(base),
    )
    tokenizer, model = build_model(model_config, base)
    train = tokenise(tokenizer, model_config, _synthetic(48, seed=0))
    validation = tokenise(tokenizer, model_config, _synthetic(24, seed=1))
    untrained = score_rows(model, validation)
    rows: list[tuple[dict[str, float], bool, bool]] = []
    job = _job(epochs=2, eval_every_steps=3)
    result = fit_lora(model, train, validation, job, lambda *args: rows.append(args))

    # Validation every 3 steps and at each epoch's end: 6 steps per epoch, 2 epochs.
    assert [row["step"] for row, _, _ in rows] == [3, 6, 9, 12]
    assert result.history == [row for row, _, _ in rows]
    assert rows[-1][0]["train_loss"] < rows[0][0]["train_loss"]
    best = max(rows, key=lambda args: args[0]["val_macro_f1"])[0]
    assert result.best_score == best["val_macro_f1"]
    assert result.best_step == best["step"]
    assert [improved for _, improved, _ in rows][0] is True
    # The model holds the best state at the end, whichever step that was.
    trained = score_rows(model, validation)
    assert not np.allclose(trained, untrained)
    again = task_metrics("sentiment", trained, validation.classes)["macro_f1"]
    assert again == pytest.approx(result.best_score)
    # An artifact of it serves the same answers.
    directory = save_lora_model(tmp_path / "artifact", model)
    served = LoraSentiment.load(directory, device="cpu", base_dir=base)
    texts = _synthetic(24, seed=1).texts
    np.testing.assert_allclose(served.probabilities(texts), trained, rtol=1e-4, atol=1e-5)


def test_early_stopping_ends_training_after_patience_scores(tmp_path: Path) -> None:
    base = build_tiny_minilm_base(tmp_path / "base")
    model_config = LoraTextConfig(
        task="sentiment", labels=SENTIMENT_HEAD_LABELS, rank=2, max_length=16
    )
    tokenizer, model = build_model(model_config, base)
    train = tokenise(tokenizer, model_config, _synthetic(48, seed=0))
    validation = tokenise(tokenizer, model_config, _synthetic(16, seed=1))
    # A learning rate of ~0 never improves on the first score: stop after 2 more.
    job = _job(
        learning_rate=1e-12,
        head_learning_rate=1e-12,
        early_stopping_patience=2,
        eval_every_steps=3,
    )
    result = fit_lora(model, train, validation, job)
    assert len(result.history) == 3
    assert result.best_step == 3


def test_positive_vs_negative_auc_ignores_neutral_rows() -> None:
    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    classes = np.array([POSITIVE, NEGATIVE, NEUTRAL, NEGATIVE])
    # Positive row 0 scores 0.7; negative rows -0.5 and 0.3: ranked perfectly.
    assert positive_vs_negative_auc(probabilities, classes) == 1.0
    classes[3] = POSITIVE
    assert positive_vs_negative_auc(probabilities, classes) == 1.0
    classes[0] = NEGATIVE
    assert positive_vs_negative_auc(probabilities, classes) == 0.5
