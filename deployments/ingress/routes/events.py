"""Event routes of the ingress: posts and interactions into the Recommender.

Validation happens here (unknown types, far-future times, blank or overlong ids: 422 naming the
field, e.g. ``interactions[2].timestamp``); storage, embedding and profile updates happen in
the Recommender node, in one handle call per request.
"""

import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends

from deployments.ingress.http import (
    app,
    call_node,
    check_text,
    node_unavailable,
    require_api_key,
)
from deployments.ingress.routes.base import RouteGroup
from deployments.ingress.schemas.recommender import (
    InteractionEventsRequest,
    InteractionEventsResult,
    PostEventsRequest,
    PostEventsResult,
)
from models.exceptions import InvalidInputError
from models.recommender import Interaction, NewPost

FEATURE = "events"


def epoch_s(value: datetime) -> float:
    """Seconds since the epoch; a time without a zone is read as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def check_id(value: str, field_name: str, max_chars: int) -> str:
    """A non-blank id of at most ``max_chars`` characters, else 422 naming the field."""
    if not value.strip():
        raise InvalidInputError(field_name, f"{field_name} is blank; send the id")
    if len(value) > max_chars:
        raise InvalidInputError(
            field_name, f"{field_name} has {len(value)} characters; ids may have {max_chars}"
        )
    return value


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


# Nothing was stored on failure, and events are idempotent by id, so a plain retry is safe.
EVENTS_RETRY_HINT = "retry the same request: events are idempotent by id"


class EventRoutes(RouteGroup):
    """Posts and interactions flowing in."""

    @app.post(
        "/api/v1/events/posts",
        response_model=PostEventsResult,
        tags=["Events"],
        dependencies=[Depends(require_api_key)],
        responses={503: {"description": "Recommender unavailable; retry."}},
    )
    async def post_events(self, body: PostEventsRequest) -> Any:
        """Store posts (upsert by post_id) and embed their texts; re-sending changes nothing."""
        limits = self.config.recommendations
        check_count(len(body.posts), "posts", limits.max_events_per_request)
        posts: list[NewPost] = []
        for i, post in enumerate(body.posts):
            field = f"posts[{i}]"
            posts.append(
                NewPost(
                    post_id=check_id(post.post_id, f"{field}.post_id", limits.max_id_chars),
                    author_id=check_id(post.author_id, f"{field}.author_id", limits.max_id_chars),
                    text=check_text(post.text, f"{field}.text") if post.text else "",
                    image_urls=tuple(post.image_urls),
                    tags=tuple(normalise_tags(post.tags, f"{field}.tags", limits.max_tags)),
                    created_at_s=check_time(
                        post.created_at, f"{field}.created_at", limits.max_future_skew_s
                    ),
                    moderation_action=post.moderation_action,
                )
            )
        handle = self.node("recommender", FEATURE)
        try:
            result = await call_node(handle.ingest_posts, limits.events_timeout_s, posts)
        except Exception as exc:  # nothing stored for sure: tell the caller to retry
            return node_unavailable(
                "recommender", exc, what="take the events", hint=EVENTS_RETRY_HINT
            )
        return PostEventsResult(**asdict(result))

    @app.post(
        "/api/v1/events/interactions",
        response_model=InteractionEventsResult,
        tags=["Events"],
        dependencies=[Depends(require_api_key)],
        responses={503: {"description": "Recommender unavailable; retry."}},
    )
    async def interaction_events(self, body: InteractionEventsRequest) -> Any:
        """Store interactions (idempotent by event_id); profiles and filters update online."""
        limits = self.config.recommendations
        check_count(len(body.interactions), "interactions", limits.max_events_per_request)
        events: list[Interaction] = []
        for i, event in enumerate(body.interactions):
            field = f"interactions[{i}]"
            events.append(
                Interaction(
                    event_id=check_id(event.event_id, f"{field}.event_id", limits.max_id_chars),
                    user_id=check_id(event.user_id, f"{field}.user_id", limits.max_id_chars),
                    post_id=check_id(event.post_id, f"{field}.post_id", limits.max_id_chars),
                    type=event.type,
                    timestamp_s=check_time(
                        event.timestamp, f"{field}.timestamp", limits.max_future_skew_s
                    ),
                )
            )
        handle = self.node("recommender", FEATURE)
        try:
            result = await call_node(handle.ingest_interactions, limits.events_timeout_s, events)
        except Exception as exc:  # nothing stored for sure: tell the caller to retry
            return node_unavailable(
                "recommender", exc, what="take the events", hint=EVENTS_RETRY_HINT
            )
        return InteractionEventsResult(**asdict(result))
