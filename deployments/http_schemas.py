"""Request and response bodies of the HTTP API (kept apart from internal types)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextRequest(_Request):
    """One text to score."""

    text: StrictStr = Field(description="The text; not empty, at most `max_text_chars`.")


class TextBatchRequest(_Request):
    """Several texts to score in one call."""

    texts: list[StrictStr] = Field(
        description="The texts; 1 to `max_batch_texts` items, each not empty."
    )


class ModerateRequest(_Request):
    """A post to moderate before it is published."""

    content: StrictStr = Field(description="The post's text.")
    images: list[StrictStr] | None = Field(
        default=None, description="Image URLs of the post (needs the image moderation nodes)."
    )


class ModelRef(BaseModel):
    """Which model produced an answer."""

    name: str
    version: str
    device: str


class ModerationResult(BaseModel):
    """Moderation verdict for one text."""

    is_safe: bool = Field(description="True only when the action is approve.")
    action: Literal["approve", "flag_for_review", "reject"]
    scores: dict[str, float] = Field(description="Probability per category the model has.")
    overall: float = Field(description="Highest category score (0 when no model answered).")
    flagged_categories: list[str] = Field(description="Categories at or over their threshold.")
    model: ModelRef | None = Field(description="Model that answered; null when none could.")
    degraded: bool = Field(description="True when a fallback answered instead of the node.")
    degraded_reason: str | None = Field(default=None, description="Why the answer is degraded.")


class ModerationBatchResult(BaseModel):
    """Moderation verdicts, one per input text, in order."""

    results: list[ModerationResult]


class PostModerationResult(ModerationResult):
    """Moderation verdict for a post (text and, once enabled, images)."""

    text_moderation: ModerationResult = Field(description="Verdict on the post's text.")
    image_moderation: list[dict[str, object]] = Field(
        default_factory=list, description="Per-image verdicts (empty until images are enabled)."
    )


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


class SentimentBatchResult(BaseModel):
    """Sentiment results, one per input text, in order."""

    results: list[SentimentResult]


class ErrorDetail(BaseModel):
    """What was wrong with the request."""

    code: str = Field(description="Machine-readable error code.")
    message: str = Field(description="What is wrong and how to fix it.")
    field: str | None = Field(default=None, description="The offending field, when there is one.")


class ErrorBody(BaseModel):
    """Body of every error response."""

    error: ErrorDetail
