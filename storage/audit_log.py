"""Audit/prediction log of moderation decisions, and moderator reviews of them.

Every moderation answer of the ingress becomes one document in ``moderation_decisions``
(``_id`` = the ``decision_id`` the response carries). Moderators review a decision through
``POST /api/v1/moderation/{decision_id}/review``; retraining reads the reviewed ones as labels
(``pipelines/review_labels.py``).

Writing never sits on a request's path: ``AuditLog.record`` only appends to a bounded
in-memory buffer, and a background task writes the buffer in batches (``insert_many``, in a
worker thread, since pymongo blocks), retrying with exponential backoff while the store is
down. When the buffer is full the OLDEST pending decision is dropped (the newest are the ones
a moderator is about to review) and counted (the ``on_dropped`` callback, ``/health``).

The store is MongoDB when ``MONGODB_URL`` is set, else mongomock inside the ingress replica:
per replica and not persisted (``storage.documents.open_database``).

This module is the store only; the ingress owns its replica's ``AuditLog`` and records its
answers (``deployments/ingress/services/audit.py``).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from configs.audit import AuditConfig
from models import privacy
from storage.documents import DocumentStoreInfo, open_database

logger = logging.getLogger("ray.serve")

COLLECTION = "moderation_decisions"
# MongoDB's duplicate-key error: a retried batch whose first attempt was in fact written.
_DUPLICATE_KEY = 11000
_DECISION_ID_CHARS = 32

ResultT = TypeVar("ResultT")


class AuditStoreError(RuntimeError):
    """The decision store could not be read or written (the ingress answers 503)."""


def new_decision_id() -> str:
    """A fresh decision id: uuid4 as 32 lowercase hex characters."""
    return uuid.uuid4().hex


def is_decision_id(value: str) -> bool:
    """True when ``value`` has the shape of a decision id (32 lowercase hex characters)."""
    return len(value) == _DECISION_ID_CHARS and all(c in "0123456789abcdef" for c in value)


def content_hash(text: str) -> str:
    """sha256 of the moderated text (hex): finds repeats without storing the text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_id(raw_id: str, salt: str) -> str:
    """Keyed hash (HMAC-SHA256 under ``SOCIALPLAY_HASH_SECRET``, ``salt`` as its public
    context) of a user or reviewer id: raw ids are never stored."""
    return privacy.hash_user_id(raw_id, salt)


def decision_document(
    result: Any,
    text: str,
    route: str,
    config: AuditConfig,
    *,
    user_id: str | None = None,
    request_id: str | None = None,
    decision_id: str | None = None,
) -> dict[str, Any]:
    """The stored form of one moderation answer (``result``: a ``ModerationResult``).

    The text itself is stored only with ``config.store_text``; user ids only as salted hashes.
    """
    model = getattr(result, "model", None)
    document: dict[str, Any] = {
        "_id": decision_id or new_decision_id(),
        "created_at": datetime.now(UTC),
        "route": route,
        "content_hash": content_hash(text),
        "action": result.action,
        "scores": dict(result.scores),
        "flagged_categories": list(result.flagged_categories),
        "model": None if model is None else {"name": model.name, "version": model.version},
        "degraded": bool(result.degraded),
        "request_id": request_id,
        "user_id_hash": None if user_id is None else hash_id(user_id, config.user_id_salt),
    }
    if config.store_text:
        document["text"] = text
    return document


class DecisionRepository:
    """Moderation decisions by ``decision_id`` (the document ``_id``), over a pymongo database."""

    def __init__(self, database: Any) -> None:
        self._decisions = database[COLLECTION]
        # Exports and audits read decisions by time; reviews are found by the review time.
        self._decisions.create_index([("created_at", -1)])
        self._decisions.create_index([("review.reviewed_at", 1)], sparse=True)

    def insert_many(self, documents: Sequence[dict[str, Any]]) -> None:
        """Insert decisions; ones already stored (a retried batch) are skipped, not an error."""
        if not documents:
            return
        from pymongo.errors import BulkWriteError

        try:
            self._decisions.insert_many([dict(d) for d in documents], ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or any(e.get("code") != _DUPLICATE_KEY for e in errors):
                raise

    def get(self, decision_id: str) -> dict[str, Any] | None:
        """The decision with this id, or None."""
        document: dict[str, Any] | None = self._decisions.find_one({"_id": decision_id})
        return document

    def set_review(self, decision_id: str, review: dict[str, Any]) -> dict[str, Any] | None:
        """Store ``review`` on the decision (a later review replaces it); None when unknown."""
        from pymongo import ReturnDocument

        document: dict[str, Any] | None = self._decisions.find_one_and_update(
            {"_id": decision_id},
            {"$set": {"review": review}},
            return_document=ReturnDocument.AFTER,
        )
        return document

    def reviewed_with_text(self, after_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` reviewed decisions that kept their text, by id after ``after_id``.

        Paged by ``_id`` (a range scan on the id index; the last id is the next cursor).
        """
        query: dict[str, Any] = {"review": {"$exists": True}, "text": {"$exists": True}}
        if after_id is not None:
            query["_id"] = {"$gt": after_id}
        return list(self._decisions.find(query).sort("_id", 1).limit(limit))

    def count(self) -> int:
        """How many decisions are stored."""
        return int(self._decisions.count_documents({}))


# What /health says about where decisions go: the document store's own description.
StoreInfo = DocumentStoreInfo


def open_repository(mongodb_url: str) -> tuple[DecisionRepository, StoreInfo]:
    """The repository on MongoDB (``mongodb_url`` set) or on the embedded in-process store."""
    database, info = open_database(mongodb_url)
    return DecisionRepository(database), info


RepositoryFactory = Callable[[], DecisionRepository]
Sleep = Callable[[float], Any]


def _count_nothing(count: int) -> None:
    """The default ``on_dropped``: nobody counts drops beyond ``AuditLog.dropped``."""


class AuditLog:
    """Bounded buffer of decisions, written to a ``DecisionRepository`` in the background.

    ``record`` is synchronous, O(1) and never raises: a store outage can neither fail nor
    slow a request. The repository is created on the first write (in a worker thread:
    ``create_index`` would block the event loop while MongoDB is unreachable).
    ``on_dropped(count)`` is told about every drop (the ingress counts them in a metric).
    """

    def __init__(
        self,
        config: AuditConfig,
        repository: DecisionRepository | RepositoryFactory,
        store: StoreInfo,
        *,
        sleep: Sleep = asyncio.sleep,
        on_dropped: Callable[[int], None] = _count_nothing,
    ) -> None:
        self.config = config
        self._on_dropped = on_dropped
        self.store = store
        self._factory: RepositoryFactory | None
        if isinstance(repository, DecisionRepository):
            self._repository: DecisionRepository | None = repository
            self._factory = None
        else:
            self._repository, self._factory = None, repository
        self._sleep = sleep
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        # The batch being written: still counted against buffer_size, never dropped.
        self._in_flight: list[dict[str, Any]] = []
        self._write_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._failures = 0
        self.dropped = 0
        self.written = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    # ---- request path -------------------------------------------------------------------
    def record(self, document: dict[str, Any]) -> None:
        """Queue one decision for writing; drops the oldest pending one when the buffer is full."""
        try:
            dropped = 0
            while self._pending and self.buffered >= self.config.buffer_size:
                self._pending.popleft()
                dropped += 1
            if self.buffered >= self.config.buffer_size:
                dropped += 1  # everything buffered is in flight: the newcomer has no room
            else:
                self._pending.append(document)
            if dropped:
                self.dropped += dropped
                self._on_dropped(dropped)
            if len(self._pending) >= self.config.max_batch:
                self._wake.set()
            self._ensure_flusher()
        except Exception as exc:  # noqa: BLE001 - the audit log must never fail a request
            logger.error("audit record failed (%s)", type(exc).__name__)

    @property
    def buffered(self) -> int:
        """Decisions not yet written (pending and in flight)."""
        return len(self._pending) + len(self._in_flight)

    def buffered_document(self, decision_id: str) -> dict[str, Any] | None:
        """A decision still waiting in the buffer, or None."""
        for document in (*self._in_flight, *self._pending):
            if document["_id"] == decision_id:
                return document
        return None

    def status(self) -> dict[str, Any]:
        """The audit log as /health shows it."""
        return {
            "enabled": self.config.enabled,
            "store": self.store.kind,
            "persisted": self.store.persisted,
            "buffered": self.buffered,
            "buffer_size": self.config.buffer_size,
            "written": self.written,
            "dropped": self.dropped,
            "last_error": self.last_error,
            "last_error_age_s": (
                None if self.last_error_at is None else time.monotonic() - self.last_error_at
            ),
        }

    # ---- moderator routes ---------------------------------------------------------------
    async def get(self, decision_id: str) -> dict[str, Any] | None:
        """The decision, from the buffer or the store; AuditStoreError when the store fails."""
        buffered = self.buffered_document(decision_id)
        if buffered is not None:
            return dict(buffered)
        repository = await self._repository_or_raise()
        return await self._call(repository.get, decision_id)

    async def review(self, decision_id: str, review: dict[str, Any]) -> dict[str, Any] | None:
        """Store ``review`` on the decision (written first if still buffered); None if unknown.

        Raises:
            AuditStoreError: The store is down (the decision keeps its place in the buffer).
        """
        if self.buffered_document(decision_id) is not None:
            await self.flush()
        repository = await self._repository_or_raise()
        return await self._call(repository.set_review, decision_id, review)

    # ---- writing ------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write everything buffered now; AuditStoreError (nothing lost) when the store fails."""
        while self._pending or self._in_flight:
            if not await self._write_batch():
                raise AuditStoreError(self.last_error or "the decision store is unavailable")

    async def close(self) -> None:
        """Stop the background writer (pending decisions stay in memory)."""
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
            self._flusher = None

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Background writer: a batch when one is full or every ``flush_interval_s``."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.config.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            while self._pending or self._in_flight:
                if not await self._write_batch():
                    # Exponential backoff: a down store is not hammered by every replica.
                    delay = min(
                        self.config.retry_backoff_s * 2 ** max(self._failures - 1, 0),
                        self.config.retry_backoff_max_s,
                    )
                    await self._sleep(delay)

    async def _write_batch(self) -> bool:
        """Write one batch (at most ``max_batch``); False (batch put back) when it failed."""
        async with self._write_lock:
            if not self._in_flight:
                count = min(len(self._pending), self.config.max_batch)
                self._in_flight = [self._pending.popleft() for _ in range(count)]
            if not self._in_flight:
                return True
            try:
                repository = await self._repository_or_raise()
                await self._call(repository.insert_many, self._in_flight)
            except AuditStoreError:
                # The batch stays in flight: it is retried first, and is never dropped.
                return False
            self.written += len(self._in_flight)
            self._in_flight = []
            self._failures = 0
            return True

    async def _repository_or_raise(self) -> DecisionRepository:
        if self._repository is None:
            assert self._factory is not None
            self._repository = await self._call(self._factory)
        return self._repository

    async def _call(self, function: Callable[..., ResultT], *args: Any) -> ResultT:
        """Run a blocking store call in a worker thread; AuditStoreError when it fails."""
        try:
            result = await asyncio.to_thread(function, *args)
        except Exception as exc:  # noqa: BLE001 - any store failure is an outage to report
            self._failures += 1
            self.last_error = f"{type(exc).__name__}"
            self.last_error_at = time.monotonic()
            logger.warning("audit store call failed (%s)", self.last_error)
            raise AuditStoreError(f"the decision store is unavailable ({self.last_error})") from exc
        self.last_error = None
        return result
