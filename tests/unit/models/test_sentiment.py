"""Sentiment models: VADER and a tiny random SST-2-shaped DistilBERT checkpoint (CPU)."""

from __future__ import annotations

from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch

from models.sentiment import (
    PolarityScores,
    SentimentScores,
    TransformerSentiment,
    VaderSentiment,
)
from tests.fixtures.tiny_checkpoints import build_tiny_distilbert_sentiment

STRIDE = 8
LONG_TEXT = "i love this great song " * 40 + "but the ending was awful and sad"
TEXTS = [
    "I love this",
    LONG_TEXT,
    "",
    "what a terrible awful day",
    "the train leaves at nine from the north side " * 8,
]


@pytest.fixture(scope="module")
def vader() -> VaderSentiment:
    return VaderSentiment.load()


@pytest.fixture(scope="module")
def sentiment(tiny_sentiment_checkpoint: Path) -> TransformerSentiment:
    return TransformerSentiment.load(tiny_sentiment_checkpoint, device="cpu", stride=STRIDE)


def _scores(result: SentimentScores) -> dict[str, Any]:
    assert isinstance(result.scores, PolarityScores)
    return asdict(result.scores)


def _direct_window_softmax(model: TransformerSentiment, text: str) -> torch.Tensor:
    """Softmax of each window of `text` in checkpoint order, one unpadded call per window."""
    windows = model.preprocess([text])
    rows = []
    with torch.inference_mode():
        for i in range(len(windows)):
            inputs = {name: torch.tensor([values[i]]) for name, values in windows.features.items()}
            rows.append(torch.softmax(model.model(**inputs).logits[0], dim=-1))
    return torch.stack(rows)


# --- VADER ---------------------------------------------------------------------------------


def test_vader_polarity(vader: VaderSentiment) -> None:
    love, hate, fact = vader.predict_batch(
        ["I love this", "I hate this", "The train leaves at 9 from platform 4."]
    )
    assert love.label == "positive"
    assert hate.label == "negative"
    assert fact.label == "neutral"
    assert _scores(love)["positive"] > _scores(hate)["positive"]
    assert _scores(hate)["negative"] > _scores(love)["negative"]
    assert isinstance(love.compound, float) and isinstance(hate.compound, float)
    assert love.compound > 0.05 > -0.05 > hate.compound


def test_vader_scores_and_confidence(vader: VaderSentiment) -> None:
    texts = ["I love this", "I hate this", "The train leaves at 9 from platform 4.", ""]
    for result in vader.predict_batch(texts):
        scores = _scores(result)
        assert set(scores) == {"positive", "negative", "neutral"}
        assert sum(scores.values()) == pytest.approx(1.0, abs=0.01)
        compound = result.compound
        assert isinstance(compound, float)
        expected = 1 - abs(compound) if result.label == "neutral" else abs(compound)
        assert result.confidence == pytest.approx(expected)


def test_vader_info_and_empty_batch(vader: VaderSentiment) -> None:
    assert vader.predict_batch([]) == []
    assert vader.info.name == "vader"
    assert vader.info.version == metadata.version("vaderSentiment")
    assert vader.info.labels == ("positive", "negative", "neutral")


# --- transformer sentiment --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (("NEGATIVE", "POSITIVE"), ("negative", "positive")),
        (("POSITIVE", "NEGATIVE"), ("positive", "negative")),
    ],
)
def test_scores_follow_id2label(
    tmp_path: Path, labels: tuple[str, str], expected: tuple[str, str]
) -> None:
    path = build_tiny_distilbert_sentiment(tmp_path / "ckpt", labels=labels)
    model = TransformerSentiment.load(path, stride=STRIDE)
    assert model.info.labels == expected
    text = "what a terrible awful day"
    probabilities = _direct_window_softmax(model, text)[0].tolist()
    result = model.predict_batch([text])[0]
    scores = _scores(result)
    for index, name in enumerate(expected):
        assert scores[name] == pytest.approx(probabilities[index], abs=1e-6)
    assert scores["neutral"] is None
    assert result.label == expected[max(range(2), key=probabilities.__getitem__)]
    assert result.confidence == pytest.approx(max(probabilities), abs=1e-6)


def test_three_label_checkpoint_reports_neutral(tmp_path: Path) -> None:
    path = build_tiny_distilbert_sentiment(
        tmp_path / "three", labels=("Negative", "Neutral", "Positive")
    )
    model = TransformerSentiment.load(path, stride=STRIDE)
    assert model.info.labels == ("negative", "neutral", "positive")
    for result in model.predict_batch(TEXTS):
        scores = _scores(result)
        assert isinstance(scores["neutral"], float)
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert result.label == max(scores, key=scores.__getitem__)
        assert result.confidence == pytest.approx(max(scores.values()))


@pytest.mark.parametrize(
    "labels",
    [("LABEL_0", "LABEL_1"), ("negative", "positive", "other"), ("POSITIVE", "VERY_POSITIVE")],
)
def test_unmappable_labels_are_rejected(tmp_path: Path, labels: tuple[str, ...]) -> None:
    path = build_tiny_distilbert_sentiment(tmp_path / "bad", labels=labels)
    with pytest.raises(ValueError, match=labels[0]) as error:
        TransformerSentiment.load(path, stride=STRIDE)
    assert "must name positive/negative" in str(error.value)


def test_batch_equals_one_by_one(sentiment: TransformerSentiment) -> None:
    batch = sentiment.predict_batch(TEXTS)
    assert len(batch) == len(TEXTS)
    for got, text in zip(batch, TEXTS, strict=True):
        want = sentiment.predict_batch([text])[0]
        assert got.label == want.label
        assert _scores(got)["positive"] == pytest.approx(_scores(want)["positive"], abs=1e-5)
        assert _scores(got)["negative"] == pytest.approx(_scores(want)["negative"], abs=1e-5)
    assert len({round(_scores(r)["positive"], 4) for r in batch}) >= 4


def test_long_text_is_the_mean_over_windows(sentiment: TransformerSentiment) -> None:
    per_window = _direct_window_softmax(sentiment, LONG_TEXT)
    assert per_window.shape[0] > 1
    scores = _scores(sentiment.predict_batch([LONG_TEXT])[0])
    got = torch.tensor([scores[name] for name in sentiment.info.labels])
    torch.testing.assert_close(got, per_window.mean(dim=0), atol=1e-5, rtol=0)
    # Neither the first window alone (truncation) nor the max would give this.
    assert not torch.allclose(got, per_window[0], atol=1e-4)


def test_binary_neutral_threshold(tiny_sentiment_checkpoint: Path) -> None:
    always_neutral = TransformerSentiment.load(
        tiny_sentiment_checkpoint, stride=STRIDE, neutral_threshold=1.0
    )
    never_neutral = TransformerSentiment.load(tiny_sentiment_checkpoint, stride=STRIDE)
    for hedged, plain in zip(
        always_neutral.predict_batch(TEXTS), never_neutral.predict_batch(TEXTS), strict=True
    ):
        scores = _scores(plain)
        assert hedged.label == "neutral"
        assert plain.label in {"positive", "negative"}
        assert hedged.confidence == pytest.approx(1 - abs(scores["positive"] - scores["negative"]))
        assert _scores(hedged)["neutral"] is None
    with pytest.raises(ValueError, match="neutral_threshold=1.5"):
        TransformerSentiment.load(tiny_sentiment_checkpoint, stride=STRIDE, neutral_threshold=1.5)


def test_result_types_are_plain_python(sentiment: TransformerSentiment) -> None:
    result = sentiment.predict_batch(["I love this"])[0]
    assert set(asdict(result)) == {"label", "scores", "confidence", "compound"}
    assert result.compound is None
    assert type(result.confidence) is float
    assert all(type(v) is float for k, v in _scores(result).items() if k != "neutral")
    assert sentiment.predict_batch([]) == []
    assert sentiment.info.device == "cpu"
