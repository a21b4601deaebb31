"""Smart replies: ``/api/v1/replies/suggest``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from deployments.ingress.deps import State, require_api_key
from deployments.ingress.schemas.replies import ReplyRequest, ReplyResult
from deployments.ingress.services import replies

router = APIRouter(tags=["Replies"], dependencies=[Depends(require_api_key)])


@router.post("/api/v1/replies/suggest", response_model=ReplyResult)
async def suggest_replies(body: ReplyRequest, state: State) -> ReplyResult:
    """Up to `limit` short, diverse replies to a message, or the reason there are none."""
    return await replies.suggest_replies(state, body.message, body.context, body.limit)
