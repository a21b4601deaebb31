"""The Recommender seen from the ingress: events in, feeds, similar posts and interests out.

Validation happens here (unknown types, far-future times, blank or overlong ids: 422 naming the
field, e.g. ``interactions[2].timestamp``); storage, embedding, profiles and ranking happen in
the Recommender node, one handle call per request. A feed never fails for a node outage: the
ingress ranks the candidates from the last snapshot of post freshness and popularity.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from deployments.ingress.calls import call_node, failure_reason, node_unavailable, note_degraded
from deployments.ingress.schemas.recommender import (
    FeedResult,
    InteractionEvent,
    InteractionEventsResult,
    InterestsResult,
    PostEvent,
    PostEventsResult,
    ScoredPost,
    SimilarPostsResult,
)
from deployments.ingress.services.validation import check_id, check_text
from deployments.ingress.state import IngressState, NodeHandle
from models.exceptions import InvalidInputError, NotFoundError, OverloadedError
from models.ranking import fallback_order
from models.recommender import (
    FallbackSnapshot,
    FeedRanking,
    Interaction,
    InteractionIngestSummary,
    Interests,
    NewPost,
    PostIngestSummary,
    SimilarPosts,
)

logger = logging.getLogger("ray.serve")

EVENTS_FEATURE = "events"
FEATURE = "recommendations"
# Nothing was stored on failure, and events are idempotent by id, so a plain retry is safe.
EVENTS_RETRY_HINT = "retry the same request: events are idempotent by id"
# Interaction types that take a post out of the user's feeds (the Recommender's HIDING_TYPES).
HIDING_TYPES = frozenset({"hide", "report"})


# ---- checks -------------------------------------------------------------------------------
def epoch_s(value: datetime) -> float:
    """Seconds since the epoch; a time without a zone is read as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def check_time(value: datetime, field_name: str, max_future_skew_s: float) -> float:
    """Epoch seconds of an event time, refusing times too far in the future."""
    at_s = epoch_s(value)
    ahead_s = at_s - time.time()
    if ahead_s > max_future_skew_s:
        raise InvalidInputError(
            field_name,
            f"{field_name} is {ahead_s:.0f} s in the future (at most {max_future_skew_s:.0f} s "
            "of clock skew is accepted); send the time the event happened, in ISO 8601 "
            "with its zone",
        )
    return at_s


def check_count(count: int, field_name: str, limit: int) -> None:
    """At least one and at most ``limit`` events, else 422 naming the list."""
    if count == 0:
        raise InvalidInputError(field_name, f"{field_name} is empty; send at least one event")
    if count > limit:
        raise InvalidInputError(
            field_name, f"{field_name} has {count} items; the limit is {limit} per request"
        )


def normalise_tags(tags: list[str], field_name: str, limit: int) -> list[str]:
    """Tags without '#', lower case, blank ones dropped, each once, at most ``limit``."""
    cleaned = list(dict.fromkeys(t.strip().lstrip("#").strip().lower() for t in tags))
    cleaned = [t for t in cleaned if t]
    if len(cleaned) > limit:
        raise InvalidInputError(
            field_name, f"{field_name} has {len(cleaned)} tags; the limit is {limit} per post"
        )
    return cleaned


def check_limit(limit: int, max_results: int) -> int:
    """``limit`` within 1..max_results, else 422 naming ``limit`` (query or body alike)."""
    if limit < 1:
        raise InvalidInputError("limit", f"limit is {limit}; ask for at least 1 post")
    if limit > max_results:
        raise InvalidInputError(
            "limit", f"limit is {limit}; the most this service returns is {max_results}"
        )
    return limit


# ---- events -------------------------------------------------------------------------------
async def _ask_recommender(
    state: IngressState, method: str, *args: Any, feature: str = FEATURE, **unavailable: str
) -> Any:
    """One call to a Recommender method that has no fallback; ``unavailable`` words the 503."""
    handle = state.node("recommender", feature)
    limits = state.config.recommendations
    timeout_s = limits.events_timeout_s if feature == EVENTS_FEATURE else limits.query_timeout_s
    try:
        return await call_node(state, getattr(handle, method), timeout_s, *args)
    except Exception as exc:  # nothing to answer from: the node owns the state
        raise node_unavailable("recommender", exc, **unavailable) from exc


async def _ingest(
    state: IngressState, method: str, events: list[NewPost] | list[Interaction]
) -> Any:
    # Nothing was stored for sure when the call failed: the caller may retry as it is.
    return await _ask_recommender(
        state,
        method,
        events,
        feature=EVENTS_FEATURE,
        what="take the events",
        hint=EVENTS_RETRY_HINT,
    )


def _new_post(post: PostEvent, field: str, state: IngressState) -> NewPost:
    limits = state.config.recommendations
    return NewPost(
        post_id=check_id(post.post_id, f"{field}.post_id", limits.max_id_chars),
        author_id=check_id(post.author_id, f"{field}.author_id", limits.max_id_chars),
        text=check_text(post.text, f"{field}.text", state.config.limits) if post.text else "",
        image_urls=tuple(post.image_urls),
        tags=tuple(normalise_tags(post.tags, f"{field}.tags", limits.max_tags)),
        created_at_s=check_time(post.created_at, f"{field}.created_at", limits.max_future_skew_s),
        moderation_action=post.moderation_action,
    )


def _interaction(event: InteractionEvent, field: str, state: IngressState) -> Interaction:
    limits = state.config.recommendations
    event_id, user_id, post_id = (
        check_id(getattr(event, name), f"{field}.{name}", limits.max_id_chars)
        for name in ("event_id", "user_id", "post_id")
    )
    return Interaction(
        event_id=event_id,
        user_id=user_id,
        post_id=post_id,
        type=event.type,
        timestamp_s=check_time(event.timestamp, f"{field}.timestamp", limits.max_future_skew_s),
    )


async def ingest_posts(state: IngressState, posts: list[PostEvent]) -> PostEventsResult:
    """Store posts (upsert by post_id) and embed their texts; re-sending changes nothing."""
    check_count(len(posts), "posts", state.config.recommendations.max_events_per_request)
    records = [_new_post(post, f"posts[{i}]", state) for i, post in enumerate(posts)]
    summary: PostIngestSummary = await _ingest(state, "ingest_posts", records)
    return PostEventsResult(**asdict(summary))


async def ingest_interactions(
    state: IngressState, interactions: list[InteractionEvent]
) -> InteractionEventsResult:
    """Store interactions (idempotent by event_id); profiles and filters update online."""
    limit = state.config.recommendations.max_events_per_request
    check_count(len(interactions), "interactions", limit)
    records = [
        _interaction(event, f"interactions[{i}]", state) for i, event in enumerate(interactions)
    ]
    summary: InteractionIngestSummary = await _ingest(state, "ingest_interactions", records)
    # Stored: the feed fallback must keep these posts out too, should the node fail next.
    for record in records:
        if record.type in HIDING_TYPES:
            state.feed_snapshot.hidden.add(record.user_id, [record.post_id])
    return InteractionEventsResult(**asdict(summary))


# ---- feed ---------------------------------------------------------------------------------
async def rank_feed(
    state: IngressState, user_id: str, candidate_post_ids: list[str], limit: int
) -> FeedResult:
    """Rank candidate posts for a user (never an error for a new user or post)."""
    limits = state.config.recommendations
    user_id = check_id(user_id, "user_id", limits.max_id_chars)
    if not candidate_post_ids:
        raise InvalidInputError(
            "candidate_post_ids", "candidate_post_ids is empty; send the posts to rank"
        )
    if len(candidate_post_ids) > limits.max_candidates:
        raise InvalidInputError(
            "candidate_post_ids",
            f"candidate_post_ids has {len(candidate_post_ids)} ids; the limit is "
            f"{limits.max_candidates}",
        )
    for i, post_id in enumerate(candidate_post_ids):
        check_id(post_id, f"candidate_post_ids[{i}]", limits.max_id_chars)
    limit = check_limit(limit, limits.max_results)
    handle = state.node("recommender", FEATURE)
    try:
        ranking: FeedRanking = await call_node(
            state, handle.rank_feed, limits.query_timeout_s, user_id, candidate_post_ids, limit
        )
    except OverloadedError:
        raise  # a full node queue: 503 with Retry-After, not fallback work in the ingress
    except Exception as exc:  # the client still gets a feed, ranked as well as we can
        reason = failure_reason(exc)
        note_degraded("recommender", reason)
        logger.warning("recommender unavailable for a feed (%s); answering from fallback", reason)
        return fallback_feed(state, user_id, candidate_post_ids, limit, reason)
    if ranking.filtered_post_ids:
        state.feed_snapshot.hidden.add(user_id, ranking.filtered_post_ids)
    refresh_feed_snapshot(state, handle)
    return FeedResult(**asdict(ranking))


def refresh_feed_snapshot(state: IngressState, handle: NodeHandle) -> None:
    """Fetch a new fallback snapshot in the background when the last one is old enough."""
    limits = state.config.recommendations
    snapshot = state.feed_snapshot
    if limits.fallback_snapshot_posts == 0:
        return
    if snapshot.age_s() < limits.fallback_refresh_s:
        return
    if snapshot.refresh is not None and not snapshot.refresh.done():
        return

    async def refresh() -> None:
        try:
            latest: FallbackSnapshot = await call_node(
                state,
                handle.fallback_snapshot,
                limits.query_timeout_s,
                limits.fallback_snapshot_posts,
            )
        except Exception as exc:  # the old snapshot stays; next feed tries again
            logger.warning("feed fallback snapshot not refreshed (%s)", failure_reason(exc))
            return
        snapshot.latest = latest
        snapshot.taken_at_s = time.monotonic()

    snapshot.refresh = asyncio.get_running_loop().create_task(refresh())


def fallback_feed(
    state: IngressState, user_id: str, candidates: list[str], limit: int, reason: str
) -> FeedResult:
    """The candidates the snapshot knows to be unflagged, ranked by freshness and popularity.

    Never a post whose flag status is unknown (not in the snapshot, or no snapshot yet: those
    are listed in ``unknown_post_ids``), a flagged one, or one the user hid or reported as far
    as this replica knows (``filtered_post_ids``).
    """
    snapshot = state.feed_snapshot
    unique = list(dict.fromkeys(candidates))
    hidden = snapshot.hidden.of(user_id)
    latest = snapshot.latest
    known = latest.posts if latest is not None else {}
    unknown = [p for p in unique if p not in known]
    filtered = [p for p in unique if p in known and (known[p][2] or p in hidden)]
    posts: list[ScoredPost] = []
    if latest is None:
        how = "no snapshot yet, so no post's flag status is known: none returned"
    else:
        ranked = fallback_order(
            unique,
            latest.posts,
            time.time(),
            latest.freshness_half_life_s,
            latest.freshness_weight,
            latest.popularity_weight,
            limit,
            hidden,
        )
        posts = [ScoredPost(post_id=p, score=score) for p, score in ranked]
        how = (
            f"ranked by freshness and popularity from a snapshot {snapshot.age_s():.0f} s old; "
            "posts it does not know (flag status unknown) are left out"
        )
    return FeedResult(
        posts=posts,
        unknown_post_ids=unknown,
        filtered_post_ids=filtered,
        terms={},
        cold_start=True,
        cached=False,
        degraded=True,
        degraded_reason=f"{reason}; {how}",
    )


# ---- similar posts and interests ----------------------------------------------------------
async def similar_posts(state: IngressState, post_id: str, limit: int) -> SimilarPostsResult:
    """Nearest posts by text embedding; NotFoundError for a post the service never saw."""
    limits = state.config.recommendations
    check_id(post_id, "post_id", limits.max_id_chars)
    limit = check_limit(limit, limits.max_results)
    result: SimilarPosts | None = await _ask_recommender(state, "similar_posts", post_id, limit)
    if result is None:
        raise NotFoundError(
            "post_id",
            "post_id is not known; send it to /api/v1/events/posts first",
            "unknown_post",
        )
    return SimilarPostsResult(**asdict(result))


async def user_interests(state: IngressState, user_id: str, limit: int) -> InterestsResult:
    """The user's top topics (tags and embedding clusters) with weights."""
    limits = state.config.recommendations
    check_id(user_id, "user_id", limits.max_id_chars)
    limit = check_limit(limit, limits.max_results)
    interests: Interests = await _ask_recommender(state, "interests", user_id, limit)
    return InterestsResult(**asdict(interests))
