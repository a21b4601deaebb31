"""What aspect-based sentiment takes and answers, and its lexicon fallback: no torch here.

The ingress and the Trends node build `AspectRequest` items and read `AspectAnswer` results
of the AspectSentiment node (`models.aspects` holds the model); they import this module only,
so they never load torch. `WindowVaderAspects` answers in the same shape when the node
cannot: VADER over a window of words around each occurrence of the aspect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from models.answers import ModelInfo

__all__ = [
    "ASPECT_CATEGORIES",
    "ASPECT_LABELS",
    "FALLBACK_WINDOW_WORDS",
    "AspectAnswer",
    "AspectMode",
    "AspectRequest",
    "AspectResult",
    "CategoryResult",
    "WindowVaderAspects",
    "aspect_spans",
    "term_window",
    "topic_label",
]

ASPECT_LABELS = ("positive", "negative", "neutral")
# MAMS-ACSA's categories, in the data set's own spelling.
ASPECT_CATEGORIES = (
    "food",
    "service",
    "staff",
    "price",
    "ambience",
    "menu",
    "place",
    "miscellaneous",
)
# Words kept on each side of a term by the VADER window: the width that scored best on the
# validation split carved from MAMS train (pipelines.finetune_aspects --baselines-only).
FALLBACK_WINDOW_WORDS = 4
# VADER's published thresholds on the compound score (as models.sentiment).
_VADER_POSITIVE_MIN = 0.05
_VADER_NEGATIVE_MAX = -0.05

AspectMode = Literal["given", "extracted", "categories"]


@dataclass(frozen=True)
class AspectRequest:
    """One text and what to label in it: given `aspects`, the `categories`, or neither (the
    model finds the terms). Both set is refused."""

    text: str
    aspects: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AspectResult:
    """One aspect term: where it occurs and, when it does, its label and the scores."""

    aspect: str
    found: bool
    spans: tuple[tuple[int, int], ...] = ()
    label: str | None = None
    scores: dict[str, float] | None = None


@dataclass(frozen=True)
class CategoryResult:
    """One aspect category's label and scores."""

    category: str
    label: str
    scores: dict[str, float]


@dataclass(frozen=True)
class AspectAnswer:
    """One text's answer: per-term results (``given`` or ``extracted``) or per-category."""

    mode: AspectMode
    aspects: tuple[AspectResult, ...] = ()
    categories: tuple[CategoryResult, ...] = ()


def aspect_spans(text: str, aspect: str) -> list[tuple[int, int]]:
    """Every ``(start, end)`` where `aspect` occurs in `text`: case-insensitive, on word
    boundaries ("food" is not found in "seafood"), any run of whitespace between words."""
    words = aspect.split()
    if not words:
        return []
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(word) for word in words) + r"(?!\w)"
    return [(match.start(), match.end()) for match in re.finditer(pattern, text, re.IGNORECASE)]


def term_window(text: str, span: tuple[int, int], half_width: int) -> str:
    """The term at `span` with up to `half_width` whitespace-separated words on each side."""
    before = text[: span[0]].split()
    after = text[span[1] :].split()
    return " ".join(before[-half_width:] + [text[span[0] : span[1]]] + after[:half_width])


def _request_mode(request: AspectRequest) -> AspectMode:
    if request.categories is not None:
        return "categories"
    return "given" if request.aspects is not None else "extracted"


class WindowVaderAspects:
    """Fallback of the AspectSentiment node, same answers in shape: a term's label is VADER's
    over `FALLBACK_WINDOW_WORDS` words around its occurrences; a category gets the whole
    text's label (VADER cannot place it); without aspects no term is found (no tagger)."""

    def __init__(self, analyzer: Any, version: str) -> None:
        """Wrap a `SentimentIntensityAnalyzer`; use `load` instead of calling this."""
        self._analyzer = analyzer
        self.info = ModelInfo(
            name="vader-window", version=version, device="cpu", labels=ASPECT_LABELS
        )

    @classmethod
    def load(cls) -> WindowVaderAspects:
        """Build the analyzer (VADER's lexicon ships in its package)."""
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        return cls(SentimentIntensityAnalyzer(), metadata.version("vaderSentiment"))

    def _label(self, text: str) -> tuple[str, dict[str, float]]:
        raw = self._analyzer.polarity_scores(text)
        compound = float(raw["compound"])
        if compound >= _VADER_POSITIVE_MIN:
            label = "positive"
        elif compound <= _VADER_NEGATIVE_MAX:
            label = "negative"
        else:
            label = "neutral"
        scores = {"positive": float(raw["pos"]), "negative": float(raw["neg"])}
        scores["neutral"] = float(raw["neu"]) if sum(scores.values()) or raw["neu"] else 1.0
        return label, scores

    def predict_batch(self, requests: list[AspectRequest]) -> list[AspectAnswer]:
        """One answer per request, in input order."""
        answers = []
        for request in requests:
            mode = _request_mode(request)
            if mode == "categories":
                label, scores = self._label(request.text)
                results = tuple(
                    CategoryResult(category, label, dict(scores))
                    for category in request.categories or ()
                )
                answers.append(AspectAnswer(mode, categories=results))
                continue
            terms = []
            for aspect in request.aspects or ():
                spans = aspect_spans(request.text, aspect)
                if not spans:
                    terms.append(AspectResult(aspect, False))
                    continue
                window = " ".join(
                    term_window(request.text, span, FALLBACK_WINDOW_WORDS) for span in spans
                )
                label, scores = self._label(window)
                terms.append(AspectResult(aspect, True, tuple(spans), label, scores))
            answers.append(AspectAnswer(mode, aspects=tuple(terms)))
        return answers


def topic_label(answer: AspectAnswer) -> str | None:
    """One label for a topic from the answer about its terms (a trend's keywords may several
    occur): the most frequent label of the terms found, ties broken by the labels' summed
    scores; None when no term is found."""
    votes = dict.fromkeys(ASPECT_LABELS, 0)
    totals = dict.fromkeys(ASPECT_LABELS, 0.0)
    for item in answer.aspects:
        if item.found and item.label in votes:
            votes[item.label] += 1
            totals[item.label] += (item.scores or {}).get(item.label, 0.0)
    if not any(votes.values()):
        return None
    return max(ASPECT_LABELS, key=lambda name: (votes[name], totals[name]))
