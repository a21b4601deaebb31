"""Pymongo-style repositories for posts and interactions.

``MONGODB_URL`` set: a real MongoDB through pymongo. Empty: mongomock, an in-process store
with the pymongo API (the same repository code runs on both); it is not persisted, so a
restart of the Recommender replica starts from an empty history.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_DEFAULT_DATABASE = "socialplay"


@dataclass(frozen=True)
class DocumentStoreInfo:
    """What /health says about the document store."""

    kind: str
    persisted: bool

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "persisted": self.persisted}


def open_database(
    mongodb_url: str, database: str = _DEFAULT_DATABASE
) -> tuple[Any, DocumentStoreInfo]:
    """The database behind the repositories: pymongo when a URL is given, else mongomock."""
    if mongodb_url:
        import pymongo

        client: Any = pymongo.MongoClient(mongodb_url, serverSelectionTimeoutMS=3000, tz_aware=True)
        name = client.get_default_database(default=database).name
        return client[name], DocumentStoreInfo("mongodb", True)
    import mongomock

    logger.info("MONGODB_URL is empty: events are kept in an in-process document store")
    return mongomock.MongoClient(tz_aware=True)[database], DocumentStoreInfo(
        "embedded (mongomock, in-process, not persisted)", False
    )


class PostRepository:
    """Posts by ``post_id`` (the document ``_id``): upserts make re-sent posts a no-op."""

    def __init__(self, database: Any) -> None:
        self._posts = database["posts"]
        # Trends read the newest posts of a window; without this index MongoDB scans them all.
        self._posts.create_index([("created_at_s", -1)])

    def get_many(self, post_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Stored posts among ``post_ids``, by id."""
        ids = list(dict.fromkeys(post_ids))
        if not ids:
            return {}
        return {doc["_id"]: doc for doc in self._posts.find({"_id": {"$in": ids}})}

    def upsert(self, post: dict[str, Any]) -> None:
        """Insert or replace one post (``post["_id"]`` is its id)."""
        self._posts.replace_one({"_id": post["_id"]}, post, upsert=True)

    def all(self) -> Iterator[dict[str, Any]]:
        """Every post (start-up rebuild of the index)."""
        yield from self._posts.find({})

    def recent(self, since_s: float, limit: int) -> list[dict[str, Any]]:
        """Posts created after ``since_s`` (epoch seconds), newest first, at most ``limit``.

        Only the fields trend detection reads are returned (no image URLs, no tags).
        """
        fields = {"_id": 1, "text": 1, "text_hash": 1, "created_at_s": 1, "moderation_action": 1}
        cursor = (
            self._posts.find({"created_at_s": {"$gt": since_s}}, fields)
            .sort("created_at_s", -1)
            .limit(limit)
        )
        return list(cursor)

    def count(self) -> int:
        return int(self._posts.count_documents({}))


class InteractionRepository:
    """Interactions by ``event_id`` (the document ``_id``), indexed by user for interests."""

    def __init__(self, database: Any) -> None:
        self._events = database["interactions"]
        self._events.create_index([("user_id", 1), ("timestamp_s", -1)])

    def existing_ids(self, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` are already stored (idempotency)."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return set()
        return {doc["_id"] for doc in self._events.find({"_id": {"$in": ids}}, {"_id": 1})}

    def insert_many(self, events: list[dict[str, Any]]) -> None:
        if events:
            self._events.insert_many(events, ordered=True)

    def recent_for_user(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        """The user's latest ``limit`` interactions, newest first."""
        cursor = self._events.find({"user_id": user_id}).sort("timestamp_s", -1).limit(limit)
        return list(cursor)

    def page_after(self, after_event_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` interactions with ``event_id`` above ``after_event_id``, by id.

        For training exports: the ``_id`` index makes each page a range scan, and the last id
        of a page is the cursor of the next (events are immutable, so no page shifts).
        """
        query = {} if after_event_id is None else {"_id": {"$gt": after_event_id}}
        return list(self._events.find(query).sort("_id", 1).limit(limit))

    def count(self) -> int:
        return int(self._events.count_documents({}))
