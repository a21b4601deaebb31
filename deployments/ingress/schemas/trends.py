"""Response bodies of the trend and topic-sentiment routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Trend(BaseModel):
    """One trending topic."""

    trend_id: str = Field(description="Stable id from the topic's top keywords.")
    keywords: list[str] = Field(description="Top TF-IDF terms of the topic, strongest first.")
    post_count: int = Field(description="Posts on the topic in the window.")
    previous_count: int = Field(description="Posts on the topic in the window before it.")
    growth: float = Field(description="(post_count + 1) / (previous_count + 1).")
    sample_post_ids: list[str] = Field(description="Up to 3 posts closest to the topic.")
    sentiment: dict[str, float] = Field(
        description="Share (0..1) of positive / negative / neutral among the labelled posts."
    )
    labelled_count: int = Field(description="Posts of the topic with a sentiment label.")
    score: float = Field(description="post_count * ln(growth); the ranking key.")


class TrendsResult(BaseModel):
    """Trending topics of a window, and how fresh the answer is."""

    computed_at: str = Field(description="When the window ended (ISO 8601, UTC).")
    window_hours: float = Field(description="Length of the window (and of the previous one).")
    window_post_count: int = Field(description="Posts in the window (after moderation filter).")
    previous_window_post_count: int = Field(description="Posts in the previous window.")
    trends: list[Trend] = Field(description="Highest score first; empty when nothing rises.")
    duration_s: float = Field(description="Seconds the detection took.")
    run_s: float = Field(description="Seconds the whole run took: read, label, detect.")
    source: Literal["background", "cache", "on_demand"] = Field(
        description=(
            "background: the periodic run of the configured window; cache: an earlier "
            "on-demand result of this window; on_demand: computed for this request."
        )
    )
    age_s: float = Field(description="Seconds since computed_at.")
    stale: bool = Field(
        description=(
            "True when the background result is older than two periods (runs failing), or "
            "posts arrived after it was computed and it is not recomputed yet."
        )
    )
    period_s: float = Field(description="Seconds between background runs.")
    next_run_in_s: float | None = Field(
        default=None,
        description="Seconds until the next background run lands (null for other windows).",
    )
    truncated: bool = Field(
        description="True when the store had more posts than the run may read (newest kept)."
    )
    newly_labelled: int = Field(description="Posts the sentiment node labelled for this run.")
    unlabelled_posts: int = Field(description="Posts of both windows still without a label.")


class TopicSentimentResult(BaseModel):
    """Measured sentiment of the recent posts on a topic."""

    topic: list[str] = Field(description="The terms matched (a trend's keywords, or one).")
    kind: Literal["keyword", "trend"] = Field(description="How the topic was read.")
    trend_id: str | None = Field(default=None, description="The trend id, for kind=trend.")
    window_hours: float = Field(description="Length of the window, ending now.")
    total: int = Field(description="Posts in the window that mention the topic.")
    labelled: int = Field(description="Of those, posts with a sentiment label.")
    counts: dict[str, int] = Field(description="Posts per label.")
    percentages: dict[str, float] = Field(description="100 * count / labelled, per label.")
    aspect_labelled: int = Field(
        description="Of the labelled posts, those labelled for the topic itself by the "
        "aspect-sentiment model (a post can praise one thing and pan another); the others "
        "count by their whole-post label."
    )
    computed_at: str = Field(description="End of the window (ISO 8601, UTC).")
    truncated: bool = Field(
        description="True when the window had more posts than one request may read."
    )
