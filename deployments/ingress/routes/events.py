"""Posts and interactions into the Recommender: ``/api/v1/events/{posts,interactions}``."""

from __future__ import annotations

from deployments.ingress.deps import State, api_router
from deployments.ingress.schemas.recommender import (
    InteractionEventsRequest,
    InteractionEventsResult,
    PostEventsRequest,
    PostEventsResult,
)
from deployments.ingress.services import recommender

router = api_router(
    tags=["Events"],
    responses={503: {"description": "Recommender unavailable; retry."}},
)


@router.post("/api/v1/events/posts")
async def post_events(body: PostEventsRequest, state: State) -> PostEventsResult:
    """Store posts (upsert by post_id) and embed their texts; re-sending changes nothing."""
    return await recommender.ingest_posts(state, body.posts)


@router.post("/api/v1/events/interactions")
async def interaction_events(
    body: InteractionEventsRequest, state: State
) -> InteractionEventsResult:
    """Store interactions (idempotent by event_id); profiles and filters update online."""
    return await recommender.ingest_interactions(state, body.interactions)
