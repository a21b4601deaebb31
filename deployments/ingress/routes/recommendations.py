"""Feeds, similar posts and interests from the Recommender."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from deployments.ingress.deps import State, require_api_key
from deployments.ingress.schemas.recommender import (
    FeedRequest,
    FeedResult,
    InterestsResult,
    SimilarPostsResult,
)
from deployments.ingress.services import recommender

router = APIRouter(tags=["Recommendations"], dependencies=[Depends(require_api_key)])


@router.post("/api/v1/recommendations/feed", response_model=FeedResult)
async def rank_feed(body: FeedRequest, state: State) -> FeedResult:
    """Rank candidate posts for a user (never an error for a new user or post)."""
    return await recommender.rank_feed(state, body.user_id, body.candidate_post_ids, body.limit)


@router.post(
    "/api/v1/recommendations/similar-posts/{post_id}",
    response_model=SimilarPostsResult,
    responses={404: {"description": "Unknown post."}},
)
async def similar_posts(
    post_id: str,
    state: State,
    limit: int = Query(default=10, description="Most posts (1..max_results)."),
) -> SimilarPostsResult:
    """Nearest posts by text embedding (hnswlib index; flagged posts left out)."""
    return await recommender.similar_posts(state, post_id, limit)


@router.get("/api/v1/users/{user_id}/interests", response_model=InterestsResult)
async def user_interests(
    user_id: str,
    state: State,
    limit: int = Query(default=10, description="Most topics (1..max_results)."),
) -> InterestsResult:
    """The user's top topics (tags and embedding clusters) with weights."""
    return await recommender.user_interests(state, user_id, limit)
