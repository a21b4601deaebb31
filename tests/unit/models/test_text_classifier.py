"""The text classifier registry: one loader for moderation and sentiment, by task and kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.nodes import TEXT_CLASSIFIER_SPECS
from models.moderation import ProfanityModerator, TransformerModerator
from models.sentiment import SentimentScores, TransformerSentiment, VaderSentiment
from models.text_classifier import (
    SHIPPED_KIND,
    SUPPORTED_TASKS,
    load_embedded_default,
    load_text_classifier,
    task_spec,
)

STRIDE = 8


def test_the_configs_and_the_registry_know_the_same_tasks_and_kinds() -> None:
    assert set(TEXT_CLASSIFIER_SPECS) == set(SUPPORTED_TASKS)
    for task, spec_class in TEXT_CLASSIFIER_SPECS.items():
        kind_field = spec_class.model_fields["kind"]
        assert set(kind_field.annotation.__args__) == set(SUPPORTED_TASKS[task].kinds)  # type: ignore[union-attr]
        assert kind_field.default == SHIPPED_KIND
        assert SUPPORTED_TASKS[task].fallback_kind in SUPPORTED_TASKS[task].kinds


def test_embedded_defaults_load_without_a_checkpoint() -> None:
    assert isinstance(load_text_classifier("moderation", "profanity"), ProfanityModerator)
    assert isinstance(load_text_classifier("sentiment", "vader"), VaderSentiment)
    # The fallback the ingress answers with is the same model.
    assert isinstance(load_embedded_default("moderation"), ProfanityModerator)
    assert isinstance(load_embedded_default("sentiment").predict_batch(["ok"])[0], SentimentScores)
    # Options meant for checkpoints are ignored, so one config shape serves every kind.
    assert isinstance(
        load_text_classifier("moderation", " Profanity ", "/unused", "cuda", stride=3),
        ProfanityModerator,
    )


def test_transformer_kinds_load_the_task_class(
    tiny_moderation_checkpoint: Path, tiny_sentiment_checkpoint: Path
) -> None:
    moderation = load_text_classifier(
        "moderation", "transformer", str(tiny_moderation_checkpoint), "cpu", stride=STRIDE
    )
    assert isinstance(moderation, TransformerModerator)
    sentiment = load_text_classifier(
        "sentiment",
        "transformer",
        str(tiny_sentiment_checkpoint),
        "cpu",
        stride=STRIDE,
        neutral_threshold=0.6,
    )
    assert isinstance(sentiment, TransformerSentiment)
    assert sentiment.neutral_threshold == 0.6
    assert task_spec("sentiment").transformer is TransformerSentiment


@pytest.mark.parametrize(
    ("task", "example"),
    [("moderation", "toxic-bert"), ("sentiment", "SST-2 DistilBERT")],
)
def test_errors_name_the_task_the_kind_and_the_fix(task: str, example: str) -> None:
    with pytest.raises(ValueError, match=f'{task} kind "transformer" needs a checkpoint') as error:
        load_text_classifier(task, "transformer")
    assert example in str(error.value)
    kinds = ", ".join(SUPPORTED_TASKS[task].kinds)
    with pytest.raises(ValueError, match=f"unknown {task} model kind 'textblob'") as error:
        load_text_classifier(task, "textblob")
    assert kinds in str(error.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text_classifier(task, "transformer", "/nonexistent/checkpoint")
    with pytest.raises(ValueError, match="unknown text task 'topics'"):
        load_text_classifier("topics", "head")
