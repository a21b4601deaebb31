"""Feeds, similar posts and interests from the Recommender."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from deployments.ingress.deps import State, api_router
from deployments.ingress.schemas.recommender import (
    FeedRequest,
    FeedResult,
    InterestsResult,
    SimilarPostsResult,
)
from deployments.ingress.services import recommender

PostsLimit = Annotated[int, Query(description="Most posts (1..max_results).")]
TopicsLimit = Annotated[int, Query(description="Most topics (1..max_results).")]

router = api_router(tags=["Recommendations"])


@router.post("/api/v1/recommendations/feed")
async def rank_feed(body: FeedRequest, state: State) -> FeedResult:
    """Rank candidate posts for a user (never an error for a new user or post)."""
    return await recommender.rank_feed(state, body.user_id, body.candidate_post_ids, body.limit)


@router.post(
    "/api/v1/recommendations/similar-posts/{post_id}",
    responses={404: {"description": "Unknown post."}},
)
async def similar_posts(post_id: str, state: State, limit: PostsLimit = 10) -> SimilarPostsResult:
    """Nearest posts by text embedding (hnswlib index; flagged posts left out)."""
    return await recommender.similar_posts(state, post_id, limit)


@router.get("/api/v1/users/{user_id}/interests")
async def user_interests(user_id: str, state: State, limit: TopicsLimit = 10) -> InterestsResult:
    """The user's top topics (tags and embedding clusters) with weights."""
    return await recommender.user_interests(state, user_id, limit)
