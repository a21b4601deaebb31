"""Response bodies of sentiment analysis (requests: ``TextRequest``, ``TextBatchRequest``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from deployments.ingress.schemas.common import EXPERIMENT_FIELD, VARIANT_FIELD, ModelRef


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
