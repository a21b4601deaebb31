"""Moderators' routes: look up a recorded moderation decision and review it.

Both need a key with the moderator scope (``MODERATOR_API_KEYS``): reviews become training
labels, and decisions may carry the moderated text.
"""

from __future__ import annotations

from typing import Any

from deployments.ingress.deps import ModeratorKey, State, api_router
from deployments.ingress.schemas.review import DecisionRecord, ReviewRequest
from deployments.ingress.services import review

_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "The key lacks the moderator scope (missing_scope)."},
    404: {"description": "No decision with this id (decision_not_found)."},
    503: {"description": "The decision store is unavailable; retry."},
}

router = api_router(tags=["Moderation"], responses=_RESPONSES)


@router.get("/api/v1/moderation/decisions/{decision_id}")
async def get_decision(decision_id: str, state: State, key: ModeratorKey) -> DecisionRecord:
    """A recorded moderation decision and its review, if any (for moderators)."""
    return await review.get_decision(state, decision_id)


@router.post("/api/v1/moderation/{decision_id}/review")
async def review_decision(
    decision_id: str, body: ReviewRequest, state: State, key: ModeratorKey
) -> DecisionRecord:
    """Record a moderator's verdict (and per-category labels) on a decision.

    A later review of the same decision replaces the earlier one.
    """
    return await review.review_decision(state, decision_id, body, key)
