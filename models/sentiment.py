"""Sentiment models: a positive / negative / neutral label with scores per text.

Every implementation returns one `SentimentScores` per text: the label (positive / negative /
neutral), the `PolarityScores` behind it (``neutral`` None for binary checkpoints) and a
confidence. `VaderSentiment` (embedded default, lexicon based, CPU) also sets ``compound``.
`TransformerSentiment` wraps an SST-2 style classifier from a local checkpoint directory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Self

import torch

from models.answers import ModelInfo
from models.text_windows import TextWindows, WindowedSequenceClassifier, check_texts

__all__ = [
    "PolarityScores",
    "SENTIMENT_LABELS",
    "SentimentScores",
    "TransformerSentiment",
    "VaderSentiment",
    "canonical_sentiment_labels",
    "sentiment_scores",
]

SENTIMENT_LABELS = ("positive", "negative", "neutral")

# VADER's published thresholds on the compound score (Hutto & Gilbert, 2014; README of
# vaderSentiment): >= 0.05 positive, <= -0.05 negative, otherwise neutral.
VADER_POSITIVE_MIN_COMPOUND = 0.05
VADER_NEGATIVE_MAX_COMPOUND = -0.05

# Substrings that identify a checkpoint's label names, matched against lower-cased names
# such as "POSITIVE", "negative", "Neutral".
_LABEL_MARKERS = {"pos": "positive", "neg": "negative", "neu": "neutral"}


@dataclass(frozen=True)
class PolarityScores:
    """Probability (or proportion) of each sentiment; ``neutral`` None when the model has none."""

    positive: float
    negative: float
    neutral: float | None


@dataclass(frozen=True)
class SentimentScores:
    """The sentiment of one text.

    Attributes:
        label: ``"positive"``, ``"negative"`` or ``"neutral"``.
        scores: The scores the label was read from.
        confidence: How sure the model is of `label`, in [0, 1].
        compound: VADER's compound score in [-1, 1]; None for other models.
    """

    label: str
    scores: PolarityScores
    confidence: float
    compound: float | None = None


class VaderSentiment:
    """Embedded default: VADER lexicon/rule-based sentiment (no checkpoint, CPU only)."""

    def __init__(self, analyzer: Any, version: str) -> None:
        """Wrap a `SentimentIntensityAnalyzer`; use `load` instead of calling this."""
        self._analyzer = analyzer
        self.info = ModelInfo(name="vader", version=version, device="cpu", labels=SENTIMENT_LABELS)

    @classmethod
    def load(cls) -> VaderSentiment:
        """Build the analyzer (reads VADER's bundled lexicon from the installed package)."""
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        return cls(SentimentIntensityAnalyzer(), metadata.version("vaderSentiment"))

    def predict_batch(self, texts: list[str]) -> list[SentimentScores]:
        """Score each text with VADER.

        label: from the compound score with VADER's thresholds (>= 0.05 positive,
        <= -0.05 negative, else neutral). scores: VADER's pos/neg/neu proportions of the
        text (they sum to ~1; a text with no scorable tokens, e.g. "", reports neutral 1.0
        instead of VADER's all-zero triple). confidence: ``abs(compound)`` for a polar label,
        ``1 - abs(compound)`` for neutral. ``compound`` (in [-1, 1]) is included as well.
        """
        results: list[SentimentScores] = []
        for text in check_texts(texts):
            raw = self._analyzer.polarity_scores(text)
            compound = float(raw["compound"])
            positive, negative, neutral = float(raw["pos"]), float(raw["neg"]), float(raw["neu"])
            if positive + negative + neutral == 0.0:
                neutral = 1.0
            if compound >= VADER_POSITIVE_MIN_COMPOUND:
                label, confidence = "positive", abs(compound)
            elif compound <= VADER_NEGATIVE_MAX_COMPOUND:
                label, confidence = "negative", abs(compound)
            else:
                label, confidence = "neutral", 1.0 - abs(compound)
            scores = PolarityScores(positive=positive, negative=negative, neutral=neutral)
            results.append(SentimentScores(label, scores, confidence, compound))
        return results


def canonical_sentiment_labels(id2label: list[str], source: str) -> tuple[str, ...]:
    """Map a checkpoint's label names (in output order) to positive/negative/neutral.

    A name maps by containing ``pos`` / ``neg`` / ``neu`` (case-insensitive), so
    ``POSITIVE``, ``negative`` and ``Neutral`` all work; ``LABEL_0`` does not.

    Raises:
        ValueError: The names are not exactly {positive, negative} or
            {positive, negative, neutral}, each matched once.
    """
    canonical: list[str] = []
    for raw in id2label:
        lowered = raw.lower()
        matches = {name for marker, name in _LABEL_MARKERS.items() if marker in lowered}
        if len(matches) != 1:
            canonical = []
            break
        canonical.append(matches.pop())
    valid = {frozenset({"positive", "negative"}), frozenset(SENTIMENT_LABELS)}
    if len(set(canonical)) != len(id2label) or frozenset(canonical) not in valid:
        raise ValueError(
            f"cannot map the sentiment labels of {source!r}: id2label is {id2label}; the "
            "checkpoint's id2label must name positive/negative(/neutral), e.g. "
            '{"0": "NEGATIVE", "1": "POSITIVE"} — fix config.json or use a checkpoint that does'
        )
    return tuple(canonical)


def check_neutral_threshold(neutral_threshold: float) -> None:
    """Raise unless `neutral_threshold` is within [0, 1] (the binary checkpoints' band)."""
    if not 0.0 <= neutral_threshold <= 1.0 or math.isnan(neutral_threshold):
        raise ValueError(
            f"neutral_threshold={neutral_threshold} must be within [0, 1]; 0.0 disables "
            "neutral for binary checkpoints, e.g. 0.6 reports weak leans as neutral"
        )


def sentiment_scores(
    labels: Sequence[str], rows: Sequence[Sequence[float]], neutral_threshold: float = 0.0
) -> list[SentimentScores]:
    """Label each row of per-label probabilities (see `TransformerSentiment` for the rules).

    `labels` are canonical names (positive, negative and perhaps neutral) in row order.
    """
    has_neutral = "neutral" in labels
    results: list[SentimentScores] = []
    for row in rows:
        by_label = dict(zip(labels, row, strict=True))
        top_label = max(by_label, key=by_label.__getitem__)
        top_probability = by_label[top_label]
        if not has_neutral and top_probability < neutral_threshold:
            label = "neutral"
            confidence = 1.0 - abs(by_label["positive"] - by_label["negative"])
        else:
            label, confidence = top_label, top_probability
        scores = PolarityScores(
            positive=by_label["positive"],
            negative=by_label["negative"],
            neutral=by_label["neutral"] if has_neutral else None,
        )
        results.append(SentimentScores(label, scores, confidence))
    return results


class TransformerSentiment(WindowedSequenceClassifier[SentimentScores]):
    """SST-2 style sentiment classifier (2 or 3 labels) from a local checkpoint.

    Probabilities are a softmax over the checkpoint's labels. Long texts are split into
    overlapping windows and the text's probabilities are the MEAN over its windows (unlike
    moderation, one upbeat sentence should not make a long complaint "positive").

    Label and confidence rules:

    * 3-label checkpoint (with neutral): label = argmax, confidence = its probability.
    * 2-label checkpoint: ``scores.neutral`` is None (the model has no such output);
      label = argmax, confidence = its probability, except when the top probability is
      below `neutral_threshold`: then label = "neutral" and confidence =
      ``1 - |p_positive - p_negative|`` (1.0 for a coin flip, falling towards 0 as the
      model leans one way — the same "distance from polar" idea as VADER's neutral
      confidence). With the default threshold 0.0 a binary model never says neutral.
    """

    activation = "softmax"
    reduction = "mean"
    checkpoint_example = "an SST-2 DistilBERT download"
    neutral_threshold: float = 0.0

    @classmethod
    def load(cls, *args: Any, neutral_threshold: float = 0.0, **options: Any) -> Self:
        """`WindowedSequenceClassifier.load`, plus `neutral_threshold`: for a 2-label
        checkpoint, a top probability below it is reported as "neutral".

        Raises:
            ValueError: As `WindowedSequenceClassifier.load`, `neutral_threshold` outside
                [0, 1], or id2label names that do not identify positive/negative(/neutral).
        """
        check_neutral_threshold(neutral_threshold)
        model = super().load(*args, **options)
        model.neutral_threshold = neutral_threshold
        return model

    @classmethod
    def canonical_labels(cls, id2label: list[str], source: str) -> tuple[str, ...]:
        """positive / negative (/ neutral) for the checkpoint's label names."""
        return canonical_sentiment_labels(id2label, source)

    def postprocess(
        self, windows: TextWindows, window_logits: torch.Tensor
    ) -> list[SentimentScores]:
        """Softmax each window, average over each text's windows, and label the result."""
        per_text = self.text_probabilities(windows, window_logits)
        return sentiment_scores(self.info.labels, per_text.tolist(), self.neutral_threshold)
