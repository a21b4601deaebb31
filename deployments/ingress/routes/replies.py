"""Smart replies: ``/api/v1/replies/suggest``."""

from __future__ import annotations

from deployments.ingress.deps import State, api_router
from deployments.ingress.schemas.replies import ReplyRequest, ReplyResult
from deployments.ingress.services import replies

router = api_router(tags=["Replies"])


@router.post("/api/v1/replies/suggest")
async def suggest_replies(body: ReplyRequest, state: State) -> ReplyResult:
    """Up to `limit` short, diverse replies to a message, or the reason there are none."""
    return await replies.suggest_replies(state, body.message, body.context, body.limit)
