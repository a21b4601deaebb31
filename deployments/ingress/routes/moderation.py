"""Moderation of texts and posts: ``/api/v1/moderation/{text,batch,moderate}``."""

from __future__ import annotations

from deployments.ingress.deps import Limits, State, api_router
from deployments.ingress.schemas.common import TextBatchRequest, TextRequest
from deployments.ingress.schemas.moderation import (
    ModerateRequest,
    ModerationBatchResult,
    ModerationResult,
    PostModerationResult,
)
from deployments.ingress.services import posts
from deployments.ingress.services.text import moderate_audited
from deployments.ingress.services.validation import check_text, check_texts

router = api_router(tags=["Moderation"])


@router.post("/api/v1/moderation/text")
async def moderate_text(body: TextRequest, state: State, limits: Limits) -> ModerationResult:
    """Moderate one text: action, per-category scores and the model that answered."""
    text = check_text(body.text, "text", limits)
    return (await moderate_audited(state, "text", [text], body.user_id))[0]


@router.post("/api/v1/moderation/batch")
async def moderate_batch(
    body: TextBatchRequest, state: State, limits: Limits
) -> ModerationBatchResult:
    """Moderate up to `max_batch_texts` texts in one request."""
    texts = check_texts(body.texts, limits)
    return ModerationBatchResult(
        results=await moderate_audited(state, "batch", texts, body.user_id)
    )


@router.post("/api/v1/moderation/moderate")
async def moderate_post(body: ModerateRequest, state: State) -> PostModerationResult:
    """Moderate a post before it is published: its text and its image URLs."""
    return await posts.moderate_post(state, body.content, body.images, body.user_id)
