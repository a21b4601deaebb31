"""Request and response bodies of smart replies."""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictStr

from deployments.ingress.schemas.common import ModelRef, RequestBody


class ReplyRequest(RequestBody):
    """A message to suggest replies to."""

    message: StrictStr = Field(description="The message being answered; not empty.")
    context: list[StrictStr] = Field(
        default_factory=list,
        description="Earlier messages of the conversation, oldest first (optional).",
    )
    limit: int = Field(default=3, description="Most suggestions (1..replies.max_limit).")


class ReplySuggestion(BaseModel):
    """One suggested reply."""

    text: str = Field(description="The reply, at most 80 characters.")
    score: float = Field(description="Ranking score (higher is better).")
    intent: str | None = Field(
        default=None, description="The bank intent it came from (null for generated replies)."
    )


class ReplyResult(BaseModel):
    """Suggestions, or the reason there are none."""

    suggestions: list[ReplySuggestion] = Field(description="Best first; empty when `reason`.")
    reason: str | None = Field(
        default=None,
        description=(
            "Why there are no suggestions: flagged_by_moderation, message_too_long, "
            "no_confident_candidate or replies_unavailable."
        ),
    )
    yes_no_question: bool = Field(
        default=False, description="The message was read as a yes/no question."
    )
    moderation_action: str | None = Field(
        default=None, description="The moderation verdict on the message."
    )
    model: ModelRef | None = Field(default=None, description="The replier that answered.")
    degraded: bool = Field(default=False, description="True when the SmartReply node failed.")
    degraded_reason: str | None = Field(default=None, description="Why, when degraded.")
