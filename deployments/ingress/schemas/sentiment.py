"""Bodies of sentiment analysis: texts (requests ``TextRequest``, ``TextBatchRequest``) and
aspects of a text (``AspectSentimentRequest``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictStr

from deployments.ingress.schemas.common import (
    EXPERIMENT_FIELD,
    VARIANT_FIELD,
    ModelRef,
    RequestBody,
)
from models.aspect_types import ASPECT_CATEGORIES


class SentimentScores(BaseModel):
    """Probability (or share) per sentiment label."""

    positive: float
    negative: float
    neutral: float | None = Field(description="Null for binary models that have no neutral class.")


class SentimentResult(BaseModel):
    """Sentiment of one text."""

    label: Literal["positive", "negative", "neutral"]
    scores: SentimentScores
    confidence: float
    compound: float | None = Field(default=None, description="VADER's compound score, if VADER.")
    model: ModelRef
    degraded: bool
    degraded_reason: str | None = None
    variant: str | None = VARIANT_FIELD
    experiment: str | None = EXPERIMENT_FIELD


class SentimentBatchResult(BaseModel):
    """Sentiment results, one per input text, in order."""

    results: list[SentimentResult]


class AspectSentimentRequest(RequestBody):
    """A text and what to label in it: `aspects` (terms), `categories`, or neither (the model
    finds the aspect terms itself)."""

    text: StrictStr = Field(description="The text; not empty, at most `max_text_chars`.")
    aspects: list[StrictStr] | None = Field(
        default=None,
        description="Aspect terms to label, 1 to `max_aspects`, each not empty and at most "
        "`max_aspect_chars`; matched in the text case-insensitively on word boundaries.",
    )
    categories: list[StrictStr] | None = Field(
        default=None,
        description="Aspect categories to label instead of terms, 1 to `max_aspects` of: "
        + ", ".join(ASPECT_CATEGORIES)
        + ". Not together with `aspects`.",
    )


class AspectSentimentScores(BaseModel):
    """Probability per label."""

    positive: float
    negative: float
    neutral: float


class AspectTermResult(BaseModel):
    """One aspect term: where it occurs and, when found, its label."""

    aspect: str
    found: bool = Field(description="False: the term does not occur in the text; no label.")
    label: Literal["positive", "negative", "neutral"] | None = None
    scores: AspectSentimentScores | None = None
    spans: list[tuple[int, int]] = Field(
        description="[start, end) character offsets of every occurrence in the text."
    )


class CategorySentimentResult(BaseModel):
    """One aspect category's label."""

    category: str
    label: Literal["positive", "negative", "neutral"]
    scores: AspectSentimentScores


class AspectSentimentResult(BaseModel):
    """Sentiment per aspect of one text."""

    mode: Literal["given", "extracted", "categories"] = Field(
        description="given: the request's terms; extracted: terms the model found; "
        "categories: the request's categories."
    )
    aspects: list[AspectTermResult] = Field(description="Per term, in request (or text) order.")
    categories: list[CategorySentimentResult] = Field(description="Per category, in order.")
    model: ModelRef
    degraded: bool
    degraded_reason: str | None = None
