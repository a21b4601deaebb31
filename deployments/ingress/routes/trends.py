"""Trending topics and topic sentiment: ``/api/v1/trends``, ``/api/v1/sentiment/topics/{topic}``."""

from __future__ import annotations

from fastapi import Query

from deployments.ingress.deps import State, api_router
from deployments.ingress.schemas.trends import TopicSentimentResult, TrendsResult
from deployments.ingress.services import trends as trends_service

router = api_router(
    tags=["Trends"],
    responses={503: {"description": "Trends node unavailable; retry."}},
)


@router.get("/api/v1/trends")
async def trends(
    state: State,
    window_hours: float = Query(
        default=24.0, description="Window length in hours (min_window_hours..max)."
    ),
    limit: int = Query(default=10, description="Most trends (1..max_limit)."),
) -> TrendsResult:
    """Topics rising against the previous window of the same length, with sentiment."""
    return await trends_service.trends(state, window_hours, limit)


@router.get("/api/v1/sentiment/topics/{topic}", tags=["Sentiment"])
async def topic_sentiment(
    topic: str,
    state: State,
    window_hours: float = Query(default=24.0, description="Window length in hours, ending now."),
) -> TopicSentimentResult:
    """Counts and percentages per sentiment label of the window's posts on a topic.

    `topic` is a keyword or phrase, or a trend id from `/api/v1/trends` (its keywords).
    """
    return await trends_service.topic_sentiment(state, topic, window_hours)
