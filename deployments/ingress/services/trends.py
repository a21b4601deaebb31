"""Trending topics and the measured sentiment of a topic, from the Trends node.

Both make one handle call to the Trends node, which reads posts from the Recommender and
labels from the Sentiment node; validation (window, limit, topic) happens here. There is no
fallback: the state lives in the node.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from deployments.ingress.calls import call_node, node_unavailable
from deployments.ingress.schemas.trends import TopicSentimentResult, TrendsResult
from deployments.ingress.state import IngressState
from models.exceptions import InvalidInputError

if TYPE_CHECKING:
    from models.trends import TopicSentimentAnswer, TrendsAnswer

FEATURE = "trends"
NODE_LABEL = "trends node"


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


async def _ask_trends(state: IngressState, method: str, *args: Any) -> Any:
    handle = state.node("trends", FEATURE)
    try:
        return await call_node(state, getattr(handle, method), state.config.trends.timeout_s, *args)
    except Exception as exc:  # no fallback: the state and the labels live in the node
        raise node_unavailable("trends", exc, label=NODE_LABEL) from exc


async def trends(state: IngressState, window_hours: float, limit: int) -> TrendsResult:
    """Topics rising against the previous window of the same length, with sentiment."""
    limits = state.config.trends
    window = check_window_hours(window_hours, limits.min_window_hours, limits.max_window_hours)
    limit = check_trend_limit(limit, limits.max_limit)
    answer: TrendsAnswer = await _ask_trends(state, "trends", window, limit)
    return TrendsResult.model_validate(answer.as_json())


async def topic_sentiment(
    state: IngressState, topic: str, window_hours: float
) -> TopicSentimentResult:
    """Counts and percentages per sentiment label of the window's posts on ``topic``."""
    limits = state.config.trends
    if not topic.strip():
        raise InvalidInputError("topic", "topic is blank; send a keyword or a trend id")
    if len(topic) > limits.max_topic_chars:
        raise InvalidInputError(
            "topic",
            f"topic has {len(topic)} characters; the limit is {limits.max_topic_chars}",
        )
    window = check_window_hours(window_hours, limits.min_window_hours, limits.max_window_hours)
    answer: TopicSentimentAnswer = await _ask_trends(state, "topic_sentiment", topic, window)
    return TopicSentimentResult.model_validate(answer.as_json())
