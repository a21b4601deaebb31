"""Trend routes of the ingress: trending topics and the measured sentiment of a topic.

Both make one handle call to the Trends node, which reads posts from the Recommender and
labels from the Sentiment node; validation (window, limit, topic) happens here.
"""

import math
from typing import Any

from fastapi import Depends, Query

from deployments.ingress.http import app, call_node, node_unavailable, require_api_key
from deployments.ingress.routes.base import RouteGroup
from deployments.ingress.schemas.social import TopicSentimentResult, TrendsResult
from models.exceptions import InvalidInputError

FEATURE = "trends"


def check_window_hours(value: float, min_hours: float, max_hours: float) -> float:
    """A finite window within [min_hours, max_hours], else 422 naming ``window_hours``."""
    if not math.isfinite(value) or not min_hours <= value <= max_hours:
        raise InvalidInputError(
            "window_hours",
            f"window_hours is {value}; use a number of hours from {min_hours:g} to {max_hours:g}",
        )
    return float(value)


def check_trend_limit(limit: int, max_limit: int) -> int:
    """``limit`` within 1..max_limit, else 422 naming ``limit``."""
    if not 1 <= limit <= max_limit:
        raise InvalidInputError("limit", f"limit is {limit}; ask for 1 to {max_limit} trends")
    return limit


class TrendRoutes(RouteGroup):
    """Trending topics and topic sentiment."""

    @app.get(
        "/api/v1/trends",
        response_model=TrendsResult,
        tags=["Trends"],
        dependencies=[Depends(require_api_key)],
        responses={503: {"description": "Trends node unavailable; retry."}},
    )
    async def trends(
        self,
        window_hours: float = Query(
            default=24.0, description="Window length in hours (min_window_hours..max)."
        ),
        limit: int = Query(default=10, description="Most trends (1..max_limit)."),
    ) -> Any:
        """Topics rising against the previous window of the same length, with sentiment."""
        limits = self.config.trends
        window = check_window_hours(window_hours, limits.min_window_hours, limits.max_window_hours)
        limit = check_trend_limit(limit, limits.max_limit)
        handle = self.node("trends", FEATURE)
        try:
            result = await call_node(handle.trends, limits.timeout_s, window, limit)
        except Exception as exc:  # no fallback: the state lives in the node
            return node_unavailable("trends", exc, label="trends node")
        return TrendsResult(**result.as_json())

    @app.get(
        "/api/v1/sentiment/topics/{topic}",
        response_model=TopicSentimentResult,
        tags=["Trends", "Sentiment"],
        dependencies=[Depends(require_api_key)],
        responses={503: {"description": "Trends node unavailable; retry."}},
    )
    async def topic_sentiment(
        self,
        topic: str,
        window_hours: float = Query(
            default=24.0, description="Window length in hours, ending now."
        ),
    ) -> Any:
        """Counts and percentages per sentiment label of the window's posts on a topic.

        `topic` is a keyword or phrase, or a trend id from `/api/v1/trends` (its keywords).
        """
        limits = self.config.trends
        if not topic.strip():
            raise InvalidInputError("topic", "topic is blank; send a keyword or a trend id")
        if len(topic) > limits.max_topic_chars:
            raise InvalidInputError(
                "topic",
                f"topic has {len(topic)} characters; the limit is {limits.max_topic_chars}",
            )
        window = check_window_hours(window_hours, limits.min_window_hours, limits.max_window_hours)
        handle = self.node("trends", FEATURE)
        try:
            result = await call_node(handle.topic_sentiment, limits.timeout_s, topic, window)
        except Exception as exc:  # no fallback: the labels live in the node
            return node_unavailable("trends", exc, label="trends node")
        return TopicSentimentResult(**result.as_json())
