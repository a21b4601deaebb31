"""Audit/prediction log of moderation decisions, and moderator reviews of them.

Every moderation answer of the ingress becomes one document in ``moderation_decisions``
(``_id`` = the ``decision_id`` the response carries). Moderators review a decision through
``POST /api/v1/moderation/{decision_id}/review``; retraining reads the reviewed ones as labels
(``pipelines/review_labels.py``).

Writing never waits for the store: ``AuditLog.record`` appends the decision to a durable
queue, and a background task drains the queue into the store in batches (``insert_many``, in a
worker thread, since pymongo blocks), retrying with exponential backoff while the store is
down. A decision leaves the queue only once the store has it (a batch written twice is
skipped by id), so a restart or a crash of the replica loses nothing queued:

- ``REDIS_URL`` set: a Redis stream (`RedisStreamQueue`, key ``sp:audit:queue``, consumer
  group ``writers``), shared by the ingress replicas; entries a dead replica had taken are
  claimed by another after ``_CLAIM_IDLE_MS``. While Redis does not answer, decisions go to the
  local file queue instead, and are drained from there too.
- otherwise: an append-only file per replica under ``<state_dir>/audit-queue``
  (`FileQueue`), locked while its replica lives; a replica that starts adopts the files of
  replicas that are gone.

The queue is bounded by ``buffer_size``: when it is full (the store down for long), the NEW
decision is dropped, counted (``dropped``, the ``on_dropped`` callback that feeds the
``audit_decisions_dropped`` metric, and the status /health shows) and logged; nothing is
dropped silently. ``AuditLog.shutdown`` (the ingress's ``__del__``, called by Serve on a
graceful replica stop) writes what it can within a deadline; the rest stays queued.

The store is MongoDB when ``MONGODB_URL`` is set, else mongomock inside the ingress replica:
per replica and not persisted (``storage.documents.open_database``).

This module is the store only; the ingress owns its replica's ``AuditLog`` and records its
answers (``deployments/ingress/services/audit.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import redis

from configs.audit import AuditConfig
from models import privacy
from storage.documents import DocumentStoreInfo, open_database
from storage.redis import RedisConnection, RedisGate, SyncClient

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


# ---- durable queues ---------------------------------------------------------------------------
def encode_decision(document: dict[str, Any]) -> bytes:
    """One decision as a JSON line (datetimes as ``{"$date": iso}``)."""

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return {"$date": value.isoformat()}
        raise TypeError(f"audit documents hold JSON and datetimes only, not {type(value)}")

    return json.dumps(document, default=default, separators=(",", ":")).encode("utf-8")


def decode_decision(raw: bytes | str) -> dict[str, Any]:
    """The decision `encode_decision` wrote."""

    def hook(value: dict[str, Any]) -> Any:
        if set(value) == {"$date"}:
            return datetime.fromisoformat(value["$date"])
        return value

    decoded: dict[str, Any] = json.loads(raw, object_hook=hook)
    return decoded


class DecisionQueue(Protocol):
    """Decisions waiting to be written, in order; each stays until acknowledged.

    ``take`` returns the oldest entries not yet acknowledged (the same ones again until
    ``ack``); ``ack(count)`` removes the first ``count`` entries of the last ``take``.
    """

    kind: str
    capacity: int

    def append(self, document: dict[str, Any]) -> bool:
        """Queue one decision; False (not queued) when the queue is full."""

    def take(self, limit: int) -> list[dict[str, Any]]:
        """The oldest ``limit`` unacknowledged decisions."""

    def ack(self, count: int) -> None:
        """Remove the first ``count`` decisions of the last ``take``."""

    def pending(self) -> int:
        """Decisions queued and not acknowledged."""

    def close(self) -> None:
        """Release the queue (what is pending stays for the next owner)."""


class MemoryQueue:
    """An in-memory queue (tests, and audit logs built without a state directory)."""

    kind = "memory (lost on restart)"

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: collections.deque[dict[str, Any]] = collections.deque()

    def append(self, document: dict[str, Any]) -> bool:
        """See `DecisionQueue`."""
        if len(self._items) >= self.capacity:
            return False
        self._items.append(document)
        return True

    def take(self, limit: int) -> list[dict[str, Any]]:
        """See `DecisionQueue`."""
        return [self._items[i] for i in range(min(limit, len(self._items)))]

    def ack(self, count: int) -> None:
        """See `DecisionQueue`."""
        for _ in range(min(count, len(self._items))):
            self._items.popleft()

    def pending(self) -> int:
        """See `DecisionQueue`."""
        return len(self._items)

    def close(self) -> None:
        """See `DecisionQueue`."""


class FileQueue:
    """Append-only JSON-lines file of one replica, with the acknowledged offset beside it.

    ``<dir>/<owner>.jsonl`` holds the decisions, ``<owner>.acked`` the byte offset up to which
    they are written to the store. The replica holds an exclusive ``flock`` on its file while
    it lives; at start it adopts every file whose lock it can take (their replicas are gone):
    their unacknowledged lines are appended to its own file, then the old files removed.
    A line is flushed to the OS on append: a crashed process loses nothing, a crashed host
    may lose the last moments.
    """

    kind = "file"

    def __init__(self, directory: Path, capacity: int, owner: str | None = None) -> None:
        self.capacity = capacity
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{owner or uuid.uuid4().hex}.jsonl"
        self._file: IO[bytes] = open(self.path, "a+b")  # noqa: SIM115 - held for the lifetime
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._acked_path = self.path.with_suffix(".acked")
        self._offset = self._read_offset(self._acked_path)
        self._count = self._count_lines(self._offset)
        self._taken: list[int] = []  # end offsets of the lines of the last take
        self.adopted = self._adopt_orphans()

    @staticmethod
    def _read_offset(path: Path) -> int:
        try:
            return int(path.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def _count_lines(self, offset: int) -> int:
        self._file.seek(offset)
        return sum(1 for line in self._file if line.endswith(b"\n"))

    def _adopt_orphans(self) -> int:
        adopted = 0
        for path in sorted(self.directory.glob("*.jsonl")):
            if path == self.path:
                continue
            try:
                with open(path, "rb") as orphan:
                    try:
                        fcntl.flock(orphan.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # its replica is alive
                    acked = path.with_suffix(".acked")
                    orphan.seek(self._read_offset(acked))
                    lines = [line for line in orphan if line.endswith(b"\n")]
                    self._file.seek(0, os.SEEK_END)
                    self._file.writelines(lines)
                    self._file.flush()
                    self._count += len(lines)
                    adopted += len(lines)
                    path.unlink()
                    acked.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("audit queue %s not adopted (%s)", path.name, type(exc).__name__)
        if adopted:
            logger.info("audit queue: adopted %d decisions of stopped replicas", adopted)
        return adopted

    def append(self, document: dict[str, Any]) -> bool:
        """See `DecisionQueue`."""
        if self._count >= self.capacity:
            return False
        self._file.seek(0, os.SEEK_END)
        self._file.write(encode_decision(document) + b"\n")
        self._file.flush()
        self._count += 1
        return True

    def take(self, limit: int) -> list[dict[str, Any]]:
        """See `DecisionQueue`."""
        self._file.seek(self._offset)
        documents: list[dict[str, Any]] = []
        self._taken = []
        position = self._offset
        for line in self._file:
            if len(documents) >= limit or not line.endswith(b"\n"):
                break
            position += len(line)
            documents.append(decode_decision(line))
            self._taken.append(position)
        return documents

    def ack(self, count: int) -> None:
        """See `DecisionQueue`."""
        if count <= 0 or not self._taken:
            return
        count = min(count, len(self._taken))
        self._offset = self._taken[count - 1]
        self._taken = []
        self._count -= count
        if self._count == 0:
            # Everything written: start the file over instead of growing it for ever.
            self._file.truncate(0)
            self._offset = 0
        partial = self._acked_path.with_suffix(".acked.partial")
        partial.write_text(str(self._offset))
        partial.replace(self._acked_path)

    def pending(self) -> int:
        """See `DecisionQueue`."""
        return self._count

    def close(self) -> None:
        """See `DecisionQueue` (the lock goes with the file; an empty queue is removed)."""
        if self._file.closed:
            return
        if self._count == 0:
            self.path.unlink(missing_ok=True)
            self._acked_path.unlink(missing_ok=True)
        self._file.close()


STREAM_KEY = "sp:audit:queue"
_GROUP = "writers"
# An entry taken by a consumer that has not acknowledged it for this long is claimed by the
# next writer that looks (its replica died between take and write).
_CLAIM_IDLE_MS = 60_000
_REDIS_TIMEOUT_S = 0.5


class RedisStreamQueue:
    """A Redis stream shared by the ingress replicas, with a local `FileQueue` for outages.

    Entries are read through the consumer group ``writers`` (one consumer per replica),
    acknowledged and deleted once stored. While Redis does not answer, `append` writes to the
    spill file instead (nothing is lost, nothing waits on a dead Redis after the first
    timeout), and `take` drains the spill file before the stream.
    """

    kind = "redis stream"

    def __init__(
        self,
        redis_url: str,
        capacity: int,
        spill: FileQueue,
        *,
        key: str = STREAM_KEY,
        retry_s: float = 5.0,
        client: SyncClient | None = None,
        claim_idle_ms: int = _CLAIM_IDLE_MS,
    ) -> None:
        """`claim_idle_ms`: how long another consumer's taken entry waits before it is
        claimed (tests shorten it); `client` replaces the one built from `redis_url`."""
        self.capacity = capacity
        self.claim_idle_ms = claim_idle_ms
        self.spill = spill
        self.key = key
        self.consumer = uuid.uuid4().hex[:12]
        gate = RedisGate("audit queue", retry_s, "queueing decisions in the local file")
        self._redis = RedisConnection(redis_url, gate, _REDIS_TIMEOUT_S, client)
        self._length = 0
        self._taken_ids: list[bytes] = []
        self._from_spill = False
        self._group_ready = False
        # What earlier replicas left in the stream counts as pending from the start.
        self._length = self._call(lambda r: int(r.xlen(self.key))) or 0

    def _call(self, action: Callable[[SyncClient], ResultT]) -> ResultT | None:
        try:
            if not self._group_ready:
                self._redis.run(self._create_group)
                self._group_ready = True
            return self._redis.run(action)
        except (redis.RedisError, ConnectionError):
            return None

    def _create_group(self, client: SyncClient) -> None:
        try:
            client.xgroup_create(self.key, _GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def append(self, document: dict[str, Any]) -> bool:
        """See `DecisionQueue`."""
        if self._length + self.spill.pending() >= self.capacity:
            return False
        added = self._call(lambda r: r.xadd(self.key, {"d": encode_decision(document)}))
        if added is None:
            self.spill.capacity = self.capacity
            return self.spill.append(document)
        self._length += 1
        return True

    def take(self, limit: int) -> list[dict[str, Any]]:
        """See `DecisionQueue`: the spill file first, then this consumer's unacknowledged
        entries, entries dead consumers left, then new entries."""
        self._taken_ids, self._from_spill = [], False
        if self.spill.pending():
            self._from_spill = True
            return self.spill.take(limit)

        def read(r: SyncClient) -> list[tuple[bytes, dict[bytes, bytes]]]:
            self._length = int(r.xlen(self.key))
            mine: Any = r.xreadgroup(_GROUP, self.consumer, {self.key: "0"}, count=limit)
            entries = list(mine[0][1]) if mine else []
            if not entries:
                claimed = r.xautoclaim(
                    self.key, _GROUP, self.consumer, self.claim_idle_ms, "0-0", count=limit
                )
                entries = list(claimed[1])
            if not entries:
                new: Any = r.xreadgroup(_GROUP, self.consumer, {self.key: ">"}, count=limit)
                entries = list(new[0][1]) if new else []
            return [(i, f) for i, f in entries if f]  # deleted entries come back empty

        entries = self._call(read) or []
        self._taken_ids = [entry_id for entry_id, _ in entries]
        return [decode_decision(fields[b"d"]) for _, fields in entries]

    def ack(self, count: int) -> None:
        """See `DecisionQueue` (a failed acknowledgement only means a rewrite, by id)."""
        if self._from_spill:
            self.spill.ack(count)
            return
        ids, self._taken_ids = self._taken_ids[:count], []
        if not ids:
            return

        def acknowledge(r: SyncClient) -> bool:
            pipe = r.pipeline(transaction=False)
            pipe.xack(self.key, _GROUP, *ids)
            pipe.xdel(self.key, *ids)
            pipe.execute()
            return True

        if self._call(acknowledge):
            self._length = max(self._length - len(ids), 0)

    def pending(self) -> int:
        """See `DecisionQueue` (the stream's length as last seen, plus the spill file)."""
        return self._length + self.spill.pending()

    def close(self) -> None:
        """See `DecisionQueue`."""
        self.spill.close()
        self._redis.close()


def open_queue(capacity: int, state_dir: Path, redis_url: str = "") -> DecisionQueue:
    """The durable queue: a Redis stream when `redis_url` is set, else the local file."""
    spill = FileQueue(state_dir / "audit-queue", capacity)
    if redis_url:
        return RedisStreamQueue(redis_url, capacity, spill)
    return spill


RepositoryFactory = Callable[[], DecisionRepository]
Sleep = Callable[[float], Any]


def _count_nothing(count: int) -> None:
    """The default ``on_dropped``: nobody counts drops beyond ``AuditLog.dropped``."""


class AuditLog:
    """Durable queue of decisions, written to a ``DecisionRepository`` in the background.

    ``record`` is synchronous, O(1) and never raises: a store outage can neither fail nor
    slow a request. The repository is created on the first write (in a worker thread:
    ``create_index`` would block the event loop while MongoDB is unreachable).
    ``on_dropped(count)`` is told about every drop (the ingress counts them in a metric).
    ``queue`` None: an in-memory queue (lost on restart; tests).
    """

    def __init__(
        self,
        config: AuditConfig,
        repository: DecisionRepository | RepositoryFactory,
        store: StoreInfo,
        *,
        sleep: Sleep = asyncio.sleep,
        on_dropped: Callable[[int], None] = _count_nothing,
        queue: DecisionQueue | None = None,
    ) -> None:
        self._config = config
        self._on_dropped = on_dropped
        self.store = store
        self._factory: RepositoryFactory | None
        if isinstance(repository, DecisionRepository):
            self._repository: DecisionRepository | None = repository
            self._factory = None
        else:
            self._repository, self._factory = None, repository
        self._sleep = sleep
        self.queue: DecisionQueue = queue or MemoryQueue(config.buffer_size)
        # Decisions this replica queued and not yet wrote (reviews and reads find them
        # before they reach the store); bounded like the queue.
        self._unwritten: dict[str, dict[str, Any]] = {}
        self._write_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._failures = 0
        self.dropped = 0
        self.written = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    @property
    def config(self) -> AuditConfig:
        """The audit config in force (a new one resizes the queue bound)."""
        return self._config

    @config.setter
    def config(self, config: AuditConfig) -> None:
        self._config = config
        self.queue.capacity = config.buffer_size

    # ---- request path -------------------------------------------------------------------
    def record(self, document: dict[str, Any]) -> None:
        """Queue one decision; when the queue is full it is dropped, counted and logged."""
        try:
            if not self.queue.append(document):
                self.dropped += 1
                self._on_dropped(1)
                logger.error(
                    "audit queue full (%d decisions, audit.buffer_size): decision dropped; "
                    "%d dropped so far",
                    self.config.buffer_size,
                    self.dropped,
                )
            elif len(self._unwritten) < self.config.buffer_size:
                self._unwritten[document["_id"]] = document
            if self.queue.pending() >= self.config.max_batch:
                self._wake.set()
            self._ensure_flusher()
        except Exception as exc:  # noqa: BLE001 - the audit log must never fail a request
            self.dropped += 1
            self._on_dropped(1)
            logger.error("audit record failed (%s); decision dropped", type(exc).__name__)

    @property
    def buffered(self) -> int:
        """Decisions queued and not yet written."""
        return self.queue.pending()

    def buffered_document(self, decision_id: str) -> dict[str, Any] | None:
        """A decision this replica queued and has not written yet, or None."""
        return self._unwritten.get(decision_id)

    def status(self) -> dict[str, Any]:
        """The audit log as /health shows it (``dropped``: decisions lost, queue full)."""
        return {
            "enabled": self.config.enabled,
            "store": self.store.kind,
            "persisted": self.store.persisted,
            "queue": self.queue.kind,
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
        """The decision, from the queue or the store; AuditStoreError when the store fails."""
        buffered = self.buffered_document(decision_id)
        if buffered is not None:
            return dict(buffered)
        repository = await self._repository_or_raise()
        return await self._call(repository.get, decision_id)

    async def review(self, decision_id: str, review: dict[str, Any]) -> dict[str, Any] | None:
        """Store ``review`` on the decision (written first if still queued); None if unknown.

        Raises:
            AuditStoreError: The store is down (the decision keeps its place in the queue).
        """
        if self.buffered_document(decision_id) is not None:
            await self.flush()
        repository = await self._repository_or_raise()
        return await self._call(repository.set_review, decision_id, review)

    # ---- writing ------------------------------------------------------------------------
    async def flush(self) -> None:
        """Write everything queued now; AuditStoreError (nothing lost) when the store fails."""
        while self.queue.pending():
            written = await self._write_batch()
            if written is None:
                return  # nothing this replica may take now (another replica's entries)
            if not written:
                raise AuditStoreError(self.last_error or "the decision store is unavailable")

    async def close(self) -> None:
        """Stop the background writer (queued decisions stay queued)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    async def shutdown(self, timeout_s: float) -> int:
        """Stop the writer, write what can be written within `timeout_s`, release the queue.

        Returns how many decisions are left queued (durable queues keep them for the next
        replica; the in-memory queue loses them, and says so in the log).
        """
        await self.close()
        try:
            await asyncio.wait_for(self.flush(), timeout=timeout_s)
        except (AuditStoreError, TimeoutError) as exc:
            logger.warning("audit flush at shutdown incomplete (%s)", type(exc).__name__)
        left = self.queue.pending()
        if left and isinstance(self.queue, MemoryQueue):
            logger.error("audit: %d decisions in the in-memory queue are lost at shutdown", left)
        self.queue.close()
        return left

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Background writer: a batch when one is full or every ``flush_interval_s``."""
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that
            # arrives as the wake is set, and `close` would then wait on a writer that loops on.
            try:
                async with asyncio.timeout(self.config.flush_interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            while self.queue.pending():
                written = await self._write_batch()
                if written is None:
                    break  # nothing to take now: wait for the next wake or interval
                if not written:
                    # Exponential backoff: a down store is not hammered by every replica.
                    delay = min(
                        self.config.retry_backoff_s * 2 ** max(self._failures - 1, 0),
                        self.config.retry_backoff_max_s,
                    )
                    await self._sleep(delay)

    async def _write_batch(self) -> bool | None:
        """Write one batch (at most ``max_batch``); False (batch left queued) when it failed,
        None when there was nothing to take."""
        async with self._write_lock:
            batch = self.queue.take(self.config.max_batch)
            if not batch:
                return None
            try:
                repository = await self._repository_or_raise()
                await self._call(repository.insert_many, batch)
            except AuditStoreError:
                # The batch stays first in the queue: retried first, never dropped.
                return False
            self.queue.ack(len(batch))
            for document in batch:
                self._unwritten.pop(document["_id"], None)
            self.written += len(batch)
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
