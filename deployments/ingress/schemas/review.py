"""Request and response bodies of the moderator routes (decision lookup and review)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StrictStr, StringConstraints

from deployments.ingress.schemas.common import RequestBody

Verdict = Literal["approve", "flag_for_review", "reject"]
# Category names as the models spell them ("offensive", "hate_speech", "image_unsafe"...).
CategoryName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
MAX_REVIEW_LABELS = 32
# Schema-level ceiling; the live limit is the ingress's ``audit.max_note_chars``.
MAX_NOTE_CHARS = 100_000


class ReviewRequest(RequestBody):
    """A moderator's verdict on one recorded decision."""

    verdict: Verdict = Field(description="The moderator's action for the content.")
    labels: dict[CategoryName, StrictBool] | None = Field(
        default=None,
        max_length=MAX_REVIEW_LABELS,
        description=(
            'Per-category truth, e.g. {"offensive": true, "hate_speech": false}; '
            "retraining uses it over the verdict."
        ),
    )
    reviewer_id: StrictStr = Field(
        min_length=1, max_length=256, description="Who reviewed; stored only as a salted hash."
    )
    note: StrictStr | None = Field(
        default=None,
        max_length=MAX_NOTE_CHARS,
        description="Free-text note (at most `audit.max_note_chars` characters).",
    )


class ModelName(BaseModel):
    """The model that made a decision."""

    name: str
    version: str


class Review(BaseModel):
    """A stored review (the reviewer appears only as a salted hash)."""

    verdict: Verdict
    labels: dict[str, bool] | None
    reviewer_id_hash: str
    note: str | None
    reviewed_at: datetime


class DecisionRecord(BaseModel):
    """One recorded moderation decision, with its review when it has one."""

    decision_id: str
    created_at: datetime
    route: str = Field(description='Route that decided: "text", "batch", "moderate" or "grpc".')
    content_hash: str = Field(description="sha256 of the moderated text.")
    action: Verdict
    scores: dict[str, float]
    flagged_categories: list[str]
    model: ModelName | None
    degraded: bool
    request_id: str | None
    user_id_hash: str | None
    text: str | None = Field(default=None, description="Only when `audit.store_text` is on.")
    stored: bool = Field(description="False while the decision still waits in the write buffer.")
    review: Review | None = None
