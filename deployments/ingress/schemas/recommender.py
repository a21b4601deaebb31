"""Request and response bodies of the event and recommendation routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, StrictStr

from deployments.ingress.schemas.common import RequestBody

InteractionType = Literal["view", "like", "comment", "share", "hide", "report"]
ModerationAction = Literal["approve", "flag_for_review", "reject"]


class PostEvent(RequestBody):
    """A post created (or edited, or moderated) on the social network."""

    post_id: StrictStr = Field(min_length=1, description="The post's id; re-sending it upserts.")
    author_id: StrictStr = Field(min_length=1, description="Id of the author.")
    text: StrictStr = Field(
        default="", description="The post's text (may be empty for an image-only post)."
    )
    image_urls: list[StrictStr] = Field(default_factory=list, description="Image URLs.")
    tags: list[StrictStr] = Field(
        default_factory=list, description="Hashtags or topics; '#' and case are normalised."
    )
    created_at: datetime = Field(
        description="ISO 8601 creation time; without a zone it is read as UTC."
    )
    moderation_action: ModerationAction | None = Field(
        default=None,
        description=(
            "Moderation's verdict: flag_for_review or reject keeps the post out of feeds and "
            "similar posts; approve or null lets it in. Re-send the post to change it."
        ),
    )


class PostEventsRequest(RequestBody):
    """A batch of post events."""

    posts: list[PostEvent] = Field(description="1 to `max_events_per_request` posts.")


class InteractionEvent(RequestBody):
    """One thing a user did to a post."""

    event_id: StrictStr = Field(min_length=1, description="Unique id; a repeated id is ignored.")
    user_id: StrictStr = Field(min_length=1, description="Who acted.")
    post_id: StrictStr = Field(min_length=1, description="On which post.")
    type: InteractionType = Field(description="view, like, comment, share, hide or report.")
    timestamp: datetime = Field(description="ISO 8601 time; without a zone it is read as UTC.")


class InteractionEventsRequest(RequestBody):
    """A batch of interactions."""

    interactions: list[InteractionEvent] = Field(
        description="1 to `max_events_per_request` interactions."
    )


class PostEventsResult(BaseModel):
    """What a post batch changed."""

    accepted: int = Field(description="Posts stored or updated.")
    unchanged: int = Field(description="Posts already stored exactly like this (no-op).")
    embedded: int = Field(description="Texts the embedding node turned into vectors.")
    reused_vectors: int = Field(description="Posts whose text already had a stored vector.")


class InteractionEventsResult(BaseModel):
    """What an interaction batch changed."""

    accepted: int = Field(description="New interactions stored and applied.")
    duplicates: int = Field(description="Interactions whose event_id was already stored.")
    unknown_post_ids: list[str] = Field(
        description="Posts not known yet: stored, but they cannot move the user's profile."
    )
    unknown_post_events: int = Field(
        default=0,
        description=(
            "Accepted interactions on those unknown posts (stored and counted for the hide "
            "filter; send the post first for them to shape feeds)."
        ),
    )


class FeedRequest(RequestBody):
    """Candidates to rank for one user."""

    user_id: StrictStr = Field(min_length=1, description="Whose feed.")
    candidate_post_ids: list[StrictStr] = Field(
        description="1 to `max_candidates` post ids (duplicates are ranked once)."
    )
    limit: int = Field(default=20, description="Most posts to return (1..max_results).")


class ScoredPost(BaseModel):
    """One ranked post."""

    post_id: str
    score: float = Field(description="Blended relevance (the order also applies diversity).")


class FeedResult(BaseModel):
    """A ranked feed."""

    posts: list[ScoredPost] = Field(description="Ranked posts, best first, at most `limit`.")
    unknown_post_ids: list[str] = Field(description="Candidates the service has never seen.")
    filtered_post_ids: list[str] = Field(
        description="Candidates left out: hidden or reported by the user, or moderation flagged."
    )
    terms: dict[str, Any] = Field(
        description="Each score term: used or not (and why), its weight and settings."
    )
    cold_start: bool = Field(description="True when only popularity and freshness ranked.")
    cached: bool = Field(description="True when the answer came from the feed cache.")
    degraded: bool = Field(description="True when the feature store's server is unavailable.")
    degraded_reason: str | None = Field(default=None, description="Why the answer is degraded.")


class SimilarPostsResult(BaseModel):
    """Nearest posts by embedding."""

    post_id: str
    posts: list[ScoredPost] = Field(description="Nearest posts, most similar first (cosine).")
    reason: str | None = Field(default=None, description="Why the list is empty, when it is.")


class InterestTopic(BaseModel):
    """One topic the user engages with."""

    topic: str = Field(description="A tag, or a cluster's label (its most common tags).")
    weight: float = Field(description="Share of the user's positive engagement in its source.")
    source: Literal["tag", "cluster"]
    cluster_id: int | None = Field(default=None, description="Cluster number (cluster topics).")


class InterestsResult(BaseModel):
    """A user's top topics."""

    user_id: str
    topics: list[InterestTopic]
    interactions_used: int = Field(description="How many of the user's interactions were read.")
    cold_start: bool = Field(description="True when the user has no interactions yet.")
