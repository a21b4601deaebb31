"""Recommendation routes of the ingress: feed ranking, similar posts, user interests.

Each makes one handle call to the Recommender node, which owns the state they read.
"""

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Any

from fastapi import Depends, Query

from deployments.ingress.http import (
    app,
    call_node,
    error_response,
    failure_reason,
    node_unavailable,
    note_degraded,
    require_api_key,
)
from deployments.ingress.routes.base import RouteGroup
from deployments.ingress.routes.events import check_id
from deployments.ingress.schemas.recommender import (
    FeedRequest,
    FeedResult,
    InterestsResult,
    SimilarPostsResult,
)
from models.exceptions import InvalidInputError
from models.ranking import fallback_order
from models.recommender import FallbackSnapshot

logger = logging.getLogger("ray.serve")

FEATURE = "recommendations"


def check_limit(limit: int, max_results: int) -> int:
    """``limit`` within 1..max_results, else 422 naming ``limit`` (query or body alike)."""
    if limit < 1:
        raise InvalidInputError("limit", f"limit is {limit}; ask for at least 1 post")
    if limit > max_results:
        raise InvalidInputError(
            "limit", f"limit is {limit}; the most this service returns is {max_results}"
        )
    return limit


class RecommendationRoutes(RouteGroup):
    """Feeds, similar posts and interests."""

    @app.post(
        "/api/v1/recommendations/feed",
        response_model=FeedResult,
        tags=["Recommendations"],
        dependencies=[Depends(require_api_key)],
    )
    async def rank_feed(self, body: FeedRequest) -> Any:
        """Rank candidate posts for a user (never an error for a new user or post)."""
        limits = self.config.recommendations
        user_id = check_id(body.user_id, "user_id", limits.max_id_chars)
        if not body.candidate_post_ids:
            raise InvalidInputError(
                "candidate_post_ids", "candidate_post_ids is empty; send the posts to rank"
            )
        if len(body.candidate_post_ids) > limits.max_candidates:
            raise InvalidInputError(
                "candidate_post_ids",
                f"candidate_post_ids has {len(body.candidate_post_ids)} ids; the limit is "
                f"{limits.max_candidates}",
            )
        for i, post_id in enumerate(body.candidate_post_ids):
            check_id(post_id, f"candidate_post_ids[{i}]", limits.max_id_chars)
        limit = check_limit(body.limit, limits.max_results)
        handle = self.node("recommender", FEATURE)
        try:
            result = await call_node(
                handle.rank_feed, limits.query_timeout_s, user_id, body.candidate_post_ids, limit
            )
        except Exception as exc:  # the client still gets a feed, ranked as well as we can
            reason = failure_reason(exc)
            note_degraded("recommender", reason)
            logger.warning(
                "recommender unavailable for a feed (%s); answering from fallback", reason
            )
            return self._fallback_feed(body.candidate_post_ids, limit, reason)
        self._refresh_feed_snapshot(handle)
        return FeedResult(**asdict(result))

    # The snapshot of post freshness and popularity the fallback ranks with: refreshed in the
    # background after successful feeds, so a failing Recommender finds one already here.
    _feed_snapshot: FallbackSnapshot | None = None
    _feed_snapshot_at_s: float = 0.0
    _feed_snapshot_task: "asyncio.Task[None] | None" = None

    def _refresh_feed_snapshot(self, handle: Any) -> None:
        limits = self.config.recommendations
        if limits.fallback_snapshot_posts == 0:
            return
        if time.monotonic() - self._feed_snapshot_at_s < limits.fallback_refresh_s:
            return
        if self._feed_snapshot_task is not None and not self._feed_snapshot_task.done():
            return

        async def refresh() -> None:
            try:
                snapshot = await call_node(
                    handle.fallback_snapshot,
                    limits.query_timeout_s,
                    limits.fallback_snapshot_posts,
                )
            except Exception as exc:  # the old snapshot stays; next feed tries again
                logger.warning("feed fallback snapshot not refreshed (%s)", failure_reason(exc))
                return
            self._feed_snapshot = snapshot
            self._feed_snapshot_at_s = time.monotonic()

        self._feed_snapshot_task = asyncio.get_running_loop().create_task(refresh())

    def _fallback_feed(self, candidates: list[str], limit: int, reason: str) -> FeedResult:
        snapshot = self._feed_snapshot
        if snapshot is None:
            ordered = list(dict.fromkeys(candidates))[:limit]
            posts = [{"post_id": p, "score": 0.0} for p in ordered]
            how = "candidates returned unranked, in the order sent"
        else:
            ranked = fallback_order(
                candidates,
                snapshot.posts,
                time.time(),
                snapshot.freshness_half_life_s,
                snapshot.freshness_weight,
                snapshot.popularity_weight,
                limit,
            )
            posts = [{"post_id": p, "score": score} for p, score in ranked]
            age_s = time.monotonic() - self._feed_snapshot_at_s
            how = (
                f"ranked by freshness and popularity from a snapshot {age_s:.0f} s old; "
                "posts it does not know follow in the order sent"
            )
        return FeedResult(
            posts=posts,  # type: ignore[arg-type]
            unknown_post_ids=[],
            filtered_post_ids=[],
            terms={},
            cold_start=True,
            cached=False,
            degraded=True,
            degraded_reason=f"{reason}; {how}",
        )

    @app.post(
        "/api/v1/recommendations/similar-posts/{post_id}",
        response_model=SimilarPostsResult,
        tags=["Recommendations"],
        dependencies=[Depends(require_api_key)],
        responses={404: {"description": "Unknown post."}},
    )
    async def similar_posts(
        self,
        post_id: str,
        limit: int = Query(default=10, description="Most posts (1..max_results)."),
    ) -> Any:
        """Nearest posts by text embedding (hnswlib index; flagged posts left out)."""
        limits = self.config.recommendations
        check_id(post_id, "post_id", limits.max_id_chars)
        limit = check_limit(limit, limits.max_results)
        handle = self.node("recommender", FEATURE)
        try:
            result = await call_node(handle.similar_posts, limits.query_timeout_s, post_id, limit)
        except Exception as exc:  # no fallback has the index
            return node_unavailable("recommender", exc)
        if result is None:
            return error_response(
                404,
                "unknown_post",
                "post_id is not known; send it to /api/v1/events/posts first",
                "post_id",
            )
        return SimilarPostsResult(**asdict(result))

    @app.get(
        "/api/v1/users/{user_id}/interests",
        response_model=InterestsResult,
        tags=["Recommendations"],
        dependencies=[Depends(require_api_key)],
    )
    async def user_interests(
        self,
        user_id: str,
        limit: int = Query(default=10, description="Most topics (1..max_results)."),
    ) -> Any:
        """The user's top topics (tags and embedding clusters) with weights."""
        limits = self.config.recommendations
        check_id(user_id, "user_id", limits.max_id_chars)
        limit = check_limit(limit, limits.max_results)
        handle = self.node("recommender", FEATURE)
        try:
            result = await call_node(handle.interests, limits.query_timeout_s, user_id, limit)
        except Exception as exc:  # no fallback has the history
            return node_unavailable("recommender", exc)
        return InterestsResult(**asdict(result))
