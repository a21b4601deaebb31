"""MongoDB, written once: the document database, and the recommender's repositories on it.

``MONGODB_URL`` set: a real MongoDB through pymongo, with short connect and server-selection
timeouts so an unreachable server fails a call in seconds. Empty: mongomock, an in-process
store with the pymongo API (the same repository code runs on both); it is not persisted, so a
restart of the replica that holds it starts from an empty store. `open_database` says which in
its `DocumentStoreInfo` (for /health) and in the log.

Users: the recommender (`PostRepository`, `InteractionRepository`), the audit log
(`storage.audit_log.open_repository`) and the jobs that read them (`pipelines.recommender_mf`,
`pipelines.review_labels`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import mongomock
import pymongo
from pymongo.database import Database
from pymongo.results import InsertManyResult, UpdateResult

__all__ = [
    "DEFAULT_DATABASE",
    "DocumentDatabase",
    "DocumentStoreInfo",
    "ImpressionRepository",
    "InteractionRepository",
    "PostRepository",
    "document_store_info",
    "open_database",
]

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "socialplay"
# Finding (or connecting to) a server: an unreachable MongoDB fails a call after this long.
_SERVER_SELECTION_TIMEOUT_MS = 3000
_CONNECT_TIMEOUT_MS = 3000
# One operation on a connected server. Generous: exports page through large collections and
# index builds run at start-up; it only bounds a server that stopped answering.
_SOCKET_TIMEOUT_MS = 30_000

Document: TypeAlias = dict[str, Any]
# pymongo's Database; mongomock's has the same API (and is typed as pymongo's here).
DocumentDatabase: TypeAlias = Database[Document]


@dataclass(frozen=True)
class DocumentStoreInfo:
    """What /health says about the document store."""

    kind: str
    persisted: bool

    def as_dict(self) -> dict[str, object]:
        """``{"kind", "persisted"}``."""
        return {"kind": self.kind, "persisted": self.persisted}


_MONGODB = DocumentStoreInfo("mongodb", True)
_EMBEDDED = DocumentStoreInfo("embedded (mongomock, in-process, not persisted)", False)


def document_store_info(mongodb_url: str) -> DocumentStoreInfo:
    """The store `mongodb_url` selects (MongoDB when set, else embedded), without connecting."""
    return _MONGODB if mongodb_url else _EMBEDDED


def open_database(
    mongodb_url: str, database: str = DEFAULT_DATABASE
) -> tuple[DocumentDatabase, DocumentStoreInfo]:
    """The database: MongoDB at `mongodb_url` (its default database, else `database`), or
    mongomock's in-process `database` when the URL is empty.

    pymongo connects lazily: an unreachable server fails the first call, not this one.
    """
    info = document_store_info(mongodb_url)
    if mongodb_url:
        client: pymongo.MongoClient[Document] = pymongo.MongoClient(
            mongodb_url,
            serverSelectionTimeoutMS=_SERVER_SELECTION_TIMEOUT_MS,
            connectTimeoutMS=_CONNECT_TIMEOUT_MS,
            socketTimeoutMS=_SOCKET_TIMEOUT_MS,
            tz_aware=True,
        )
        selected = client.get_default_database(default=database)
        # The database name only: the URL may hold credentials.
        logger.info("document store: MongoDB, database %s", selected.name)
        return selected, info
    logger.info("MONGODB_URL is empty: documents are kept in an in-process store (%s)", info.kind)
    embedded: Any = mongomock.MongoClient(tz_aware=True)[database]
    embedded.__class__ = _KeyedDatabase
    return cast(DocumentDatabase, embedded), info


def _id_lookup(spec: object) -> list[str] | None:
    """The ids of a filter that is exactly ``{"_id": id}`` or ``{"_id": {"$in": ids}}`` (string
    ids), else None."""
    if not isinstance(spec, dict) or set(spec) != {"_id"}:
        return None
    value = spec["_id"]
    if isinstance(value, dict):
        if set(value) != {"$in"} or not isinstance(value["$in"], list | tuple):
            return None
        ids = list(value["$in"])
    else:
        ids = [value]
    if not all(isinstance(item, str) for item in ids):
        return None
    return list(dict.fromkeys(ids))


class _KeyedCollection(mongomock.Collection):  # type: ignore[type-arg]
    """mongomock's collection, with filters on ``_id`` alone answered from its keyed store.

    mongomock matches every filter by scanning every stored document, so the Recommender's
    per-request lookups by event and post id (idempotency, the ``applied`` flag, upserts) grew
    with everything stored and halved its capacity within minutes of a soak
    (docs/benchmarks.md, "Soak re-run on merged main"). Any other filter is mongomock's own.
    """

    def _iter_documents(self, filter: Any) -> Iterator[Document]:  # noqa: A002 (mongomock's name)
        ids = _id_lookup(filter)
        if ids is None:
            scan: Any = super()
            return cast(Iterator[Document], scan._iter_documents(filter))
        documents = _stored(self)
        # A list, as mongomock's own scan takes one: callers update documents while iterating.
        return iter([documents[item] for item in ids if item in documents])

    def insert_many(self, documents: Any, *args: Any, **kwargs: Any) -> Any:
        """mongomock's insert, skipped for new flat documents with string ids.

        mongomock encodes each document to BSON, deep-copies it and walks it for datetimes:
        about 0.2 ms a document, which capped event ingestion near 5,000 events/s before any
        other work (docs/benchmarks.md, "Event ingestion through HTTP"). Documents of plain
        scalars whose ids are new and distinct, with no unique index but ``_id``'s, are
        stored as copies directly; anything else (and any duplicate, which must raise as
        mongomock does) goes through mongomock.
        """
        batch = list(documents) if isinstance(documents, list | tuple) else None
        store: Any = self._store
        if (
            batch
            and not args
            and not kwargs.keys() - {"ordered"}
            and not any(
                spec.get("unique") for name, spec in store.indexes.items() if name != "_id_"
            )
            and all(_flat_with_string_id(document) for document in batch)
        ):
            ids = [document["_id"] for document in batch]
            stored = _stored(self)
            if len(set(ids)) == len(ids) and not any(item in stored for item in ids):
                with store._rwlock.writer():
                    for document in batch:
                        stored[document["_id"]] = dict(document)
                return InsertManyResult(ids, acknowledged=True)
        return super().insert_many(batch if batch is not None else documents, *args, **kwargs)

    def update_many(self, filter: Any, update: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: A002
        """mongomock's update, skipped for ``$set`` of plain scalars on an ``_id`` filter (the
        ``applied`` flag of every ingested event): set in place on the stored documents."""
        ids = _id_lookup(filter)
        fields = (
            update.get("$set") if isinstance(update, dict) and set(update) == {"$set"} else None
        )
        if (
            ids is None
            or args
            or kwargs
            or not isinstance(fields, dict)
            or not all(_plain_field(key, value) for key, value in fields.items())
        ):
            return super().update_many(filter, update, *args, **kwargs)
        stored = _stored(self)
        matched = modified = 0
        for item in ids:
            document = stored.get(item)
            if document is None:
                continue
            matched += 1
            if any(document.get(key, _ABSENT) != value for key, value in fields.items()):
                document.update(fields)
                modified += 1
        return UpdateResult(
            {"n": matched, "nModified": modified, "ok": 1.0, "updatedExisting": matched > 0},
            acknowledged=True,
        )


def _stored(collection: Any) -> dict[str, Document]:
    """The collection's documents by id: mongomock's own dict, looked up without its per-key
    reader lock (25 us a lookup). Safe: one dict lookup is atomic in CPython, and no
    collection of ours has a TTL index (the only thing that lock's caller would expire)."""
    store: Any = collection._store
    documents: dict[str, Document] = store._documents
    return documents


_ABSENT = object()
_SCALARS = (str, int, float, bool, type(None))


def _plain_field(key: object, value: object) -> bool:
    return (
        isinstance(key, str)
        and key != "_id"
        and not key.startswith("$")
        and "." not in key
        and isinstance(value, _SCALARS)
    )


def _flat_with_string_id(document: object) -> bool:
    return (
        isinstance(document, dict)
        and isinstance(document.get("_id"), str)
        and all(_plain_field(k, v) for k, v in document.items() if k != "_id")
    )


class _KeyedDatabase(mongomock.Database):  # type: ignore[type-arg]
    """mongomock's database handing out `_KeyedCollection`s."""

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> _KeyedCollection:
        collection: Any = super().get_collection(name, *args, **kwargs)
        collection.__class__ = _KeyedCollection
        return cast(_KeyedCollection, collection)


class PostRepository:
    """Posts by ``post_id`` (the document ``_id``): upserts make re-sent posts a no-op."""

    def __init__(self, database: DocumentDatabase) -> None:
        self._posts = database["posts"]
        # Trends read the newest posts of a window; without this index MongoDB scans them all.
        self._posts.create_index([("created_at_s", -1)])

    def get_many(self, post_ids: Iterable[str]) -> dict[str, Document]:
        """Stored posts among ``post_ids``, by id."""
        ids = list(dict.fromkeys(post_ids))
        if not ids:
            return {}
        return {doc["_id"]: doc for doc in self._posts.find({"_id": {"$in": ids}})}

    def upsert(self, post: Document) -> None:
        """Insert or replace one post (``post["_id"]`` is its id)."""
        self._posts.replace_one({"_id": post["_id"]}, post, upsert=True)

    def all(self) -> Iterator[Document]:
        """Every post (start-up rebuild of the index)."""
        yield from self._posts.find({})

    def recent(self, since_s: float, limit: int) -> list[Document]:
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
        """How many posts are stored."""
        return int(self._posts.count_documents({}))


class InteractionRepository:
    """Interactions by ``event_id`` (the document ``_id``), indexed by user for interests."""

    def __init__(self, database: DocumentDatabase) -> None:
        self._events = database["interactions"]
        self._events.create_index([("user_id", 1), ("timestamp_s", -1)])
        # Start-up finds the few interactions stored but not applied without a scan.
        self._events.create_index([("applied", 1)])

    def existing_ids(self, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` are already stored (idempotency)."""
        return set(self.get_many(event_ids, {"_id": 1}))

    def get_many(
        self, event_ids: Iterable[str], fields: dict[str, int] | None = None
    ) -> dict[str, Document]:
        """Stored interactions among ``event_ids``, by id (``fields``: a projection)."""
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return {}
        return {doc["_id"]: doc for doc in self._events.find({"_id": {"$in": ids}}, fields)}

    def insert_many(self, events: list[Document]) -> None:
        """Store new interactions; callers store them with ``applied: False`` first."""
        if events:
            self._events.insert_many(events, ordered=True)

    def mark_applied(self, event_ids: Iterable[str]) -> None:
        """Flag interactions whose updates (profiles, popularity, hidden posts) are done."""
        ids = list(dict.fromkeys(event_ids))
        if ids:
            self._events.update_many({"_id": {"$in": ids}}, {"$set": {"applied": True}})

    def unapplied(self) -> list[Document]:
        """Interactions stored but not yet applied (a failure came between), oldest first.

        Interactions stored before the flag existed carry no ``applied`` field: applied.
        """
        return list(self._events.find({"applied": False}).sort("timestamp_s", 1))

    def all_by_time(self) -> Iterator[Document]:
        """Every interaction, oldest first (rebuilding an empty feature store)."""
        yield from self._events.find({}).sort("timestamp_s", 1)

    def recent_for_user(self, user_id: str, limit: int) -> list[Document]:
        """The user's latest ``limit`` interactions, newest first."""
        cursor = self._events.find({"user_id": user_id}).sort("timestamp_s", -1).limit(limit)
        return list(cursor)

    def page_after(self, after_event_id: str | None, limit: int) -> list[Document]:
        """Up to ``limit`` interactions with ``event_id`` above ``after_event_id``, by id.

        For training exports: the ``_id`` index makes each page a range scan, and the last id
        of a page is the cursor of the next (events are immutable, so no page shifts).
        """
        query = {} if after_event_id is None else {"_id": {"$gt": after_event_id}}
        return list(self._events.find(query).sort("_id", 1).limit(limit))

    def count(self) -> int:
        """How many interactions are stored."""
        return int(self._events.count_documents({}))


class ImpressionRepository:
    """The impression log: one document per post a served feed showed, bounded in size.

    Ids are ``<served ms, 15 digits>-<feed>-<position>``, so id order is time order: pages
    (`page_after`) are ranges of the ``_id`` index and the oldest rows are the first ids. The
    log holds at most ``max_impressions`` rows give or take a tenth: once it is a tenth over,
    the oldest are deleted down to the bound (one delete per tenth, not one per feed).
    """

    def __init__(self, database: DocumentDatabase, max_impressions: int) -> None:
        if max_impressions < 1:
            raise ValueError(f"max_impressions={max_impressions} must be >= 1")
        self._impressions = database["impressions"]
        self.max_impressions = max_impressions
        self._count = int(self._impressions.count_documents({}))
        self.dropped = 0
        # Feeds are ranked on several threads at once: the count and the trim go one at a time.
        self._lock = threading.Lock()

    def record(self, impressions: list[Document]) -> None:
        """Store one feed's impressions, then trim the oldest when the log is over its bound."""
        if not impressions:
            return
        self._impressions.insert_many(impressions, ordered=True)
        with self._lock:
            self._count += len(impressions)
            if self._count > self.max_impressions + max(1, self.max_impressions // 10):
                self._trim()

    def _trim(self) -> None:
        excess = self._count - self.max_impressions
        oldest = self._oldest_ids(excess)
        if oldest:
            self._impressions.delete_many({"_id": {"$in": oldest}})
        self.dropped += len(oldest)
        self._count -= len(oldest)

    def _oldest_ids(self, count: int) -> list[str]:
        if isinstance(self._impressions, _KeyedCollection):
            # The embedded store keeps documents in insertion (= time) order: no sort of every
            # row, which mongomock would do in Python.
            stored = _stored(self._impressions)
            return sorted(stored)[:count] if count > 0 else []
        cursor = self._impressions.find({}, {"_id": 1}).sort("_id", 1).limit(count)
        return [str(d["_id"]) for d in cursor]

    def page_after(self, after_id: str | None, limit: int) -> list[Document]:
        """Up to ``limit`` impressions with ids above ``after_id``, oldest first (for the job)."""
        query = {} if after_id is None else {"_id": {"$gt": after_id}}
        return list(self._impressions.find(query).sort("_id", 1).limit(limit))

    def count(self) -> int:
        """How many impressions the log holds."""
        return self._count
