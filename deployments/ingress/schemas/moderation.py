"""Request and response bodies of text and post moderation."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictStr

from deployments.ingress.schemas.common import (
    EXPERIMENT_FIELD,
    USER_ID_FIELD,
    VARIANT_FIELD,
    ModelRef,
    RequestBody,
)
from deployments.ingress.schemas.images import PostImageResult


class ModerateRequest(RequestBody):
    """A post to moderate before it is published."""

    content: StrictStr = Field(description="The post's text.")
    images: list[StrictStr] | None = Field(
        default=None, description="Image URLs of the post (needs the image moderation nodes)."
    )
    user_id: StrictStr | None = USER_ID_FIELD


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
    variant: str | None = VARIANT_FIELD
    experiment: str | None = EXPERIMENT_FIELD
    decision_id: str | None = Field(
        default=None,
        description=(
            "Id of this decision in the audit log (POST /api/v1/moderation/{decision_id}/review); "
            "null when the audit log is off."
        ),
    )


class ModerationBatchResult(BaseModel):
    """Moderation verdicts, one per input text, in order."""

    results: list[ModerationResult]


class PostModerationResult(ModerationResult):
    """Moderation verdict for a post: its text and every image (worst of them wins)."""

    text_moderation: ModerationResult = Field(description="Verdict on the post's text.")
    image_moderation: list[PostImageResult] = Field(
        default_factory=list, description="Per-image verdicts, in the order of `images`."
    )
