"""Feature store: post vectors, post features, popularity, user profiles, hidden posts, feed cache.

With ``REDIS_URL`` set, Redis holds them (shared, survives restarts, and later features read the
post vectors by text hash from it). An in-process mirror always receives every write too, so
when Redis stops answering the store keeps serving from the mirror, says so in `info`, retries
Redis every ``retry_s`` and, once it is back, writes what changed meanwhile to it.

Without ``REDIS_URL`` the mirror is the store.

Redis layout (``P`` is the key prefix, default ``sp:rec:``)::

    P vec:<text_hash>        float32 bytes of the unit vector (immutable: keyed by the text)
    P post:<post_id>         hash: text_hash, created_at_s, flagged, tags (json)
    P pop                    hash: post_id -> engagement (sum of positive reaction weights)
    P profile:<user_id>      hash: vector (float32 bytes), weight, t_ref_s, events
    P hidden:<user_id>       set of post ids the user hid or reported
    P feed:<user_id>:<key>   cached feed answer (json), with a TTL
    P feedkeys:<user_id>     set of that user's cached feed keys (to drop them together)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from models.embeddings import EMBEDDING_DIM
from models.ranking import Profile

logger = logging.getLogger(__name__)

T = TypeVar("T")
_MISSING: Any = object()


@dataclass
class PostFeatures:
    """What ranking needs about a post besides its vector."""

    text_hash: str | None
    created_at_s: float
    flagged: bool = False
    tags: list[str] = field(default_factory=list)


@dataclass
class _Mirror:
    """The in-process copy (and, without Redis, the store itself)."""

    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    posts: dict[str, PostFeatures] = field(default_factory=dict)
    popularity: dict[str, float] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    hidden: dict[str, set[str]] = field(default_factory=dict)
    cache: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _vector_from(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.float32).copy()


class FeatureStore:
    """Redis-backed feature store with an in-process mirror that takes over when Redis fails."""

    def __init__(self, redis_url: str = "", key_prefix: str = "sp:rec:", retry_s: float = 5.0):
        self._prefix = key_prefix
        self._retry_s = retry_s
        self._mirror = _Mirror()
        self._lock = threading.RLock()
        self._redis: Any = None
        self._up = False
        self._next_retry_s = 0.0
        self._down_reason: str | None = None
        # What changed while Redis was down, written to it when it answers again.
        self._dirty_vectors: set[str] = set()
        self._dirty_posts: set[str] = set()
        self._dirty_users: set[str] = set()
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(
                redis_url,
                # Short timeouts: a dead Redis must cost a feed request milliseconds, not
                # seconds, before the mirror answers.
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
            self._up = self._ping()
            if self._up:
                self._load_mirror()
            else:
                self._mark_down("unreachable at start")

    # ---- health -------------------------------------------------------------------------
    @property
    def uses_redis(self) -> bool:
        return self._redis is not None

    def redis_up(self) -> bool:
        """Whether Redis answers now (tries a reconnect once the retry interval is over)."""
        return self._available()

    def info(self) -> dict[str, object]:
        """Kind and state for /health."""
        if self._redis is None:
            return {"kind": "in-process", "status": "ok", "reason": "REDIS_URL is empty"}
        if self._available():
            return {"kind": "redis", "status": "ok"}
        return {
            "kind": "redis",
            "status": "degraded",
            "reason": f"redis {self._down_reason}; serving from the in-process mirror",
        }

    def _ping(self) -> bool:
        try:
            return bool(self._redis.ping())
        except Exception as exc:  # any client error means "not available"
            self._down_reason = type(exc).__name__
            return False

    def _mark_down(self, reason: str) -> None:
        if self._up or self._down_reason != reason:
            logger.warning("feature store: redis %s; serving from the in-process mirror", reason)
        self._up = False
        self._down_reason = reason
        self._next_retry_s = time.monotonic() + self._retry_s

    def _available(self) -> bool:
        if self._redis is None:
            return False
        if self._up:
            return True
        if time.monotonic() < self._next_retry_s:
            return False
        if not self._ping():
            self._mark_down(f"unreachable ({self._down_reason})")
            return False
        logger.info("feature store: redis answers again; writing back changes made meanwhile")
        self._up = True
        self._down_reason = None
        self._resync()
        return self._up

    def _redis_do(self, action: Callable[[Any], T]) -> T:
        """Run ``action(client)`` when Redis is up; ``_MISSING`` when it is not or it fails."""
        if not self._available():
            return _MISSING  # type: ignore[no-any-return]
        try:
            return action(self._redis)
        except Exception as exc:  # connection, timeout or server errors: fail over
            import redis

            if not isinstance(exc, redis.RedisError):
                raise
            self._mark_down(f"failed ({type(exc).__name__})")
            return _MISSING  # type: ignore[no-any-return]

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    # ---- vectors ------------------------------------------------------------------------
    def get_vectors(self, text_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors among ``text_hashes`` (mirror first: vectors never change)."""
        wanted = list(dict.fromkeys(text_hashes))
        with self._lock:
            found = {h: self._mirror.vectors[h] for h in wanted if h in self._mirror.vectors}
        missing = [h for h in wanted if h not in found]
        if missing and self._redis is not None:
            raws = self._redis_do(lambda r: r.mget([self._key("vec", h) for h in missing]))
            if raws is not _MISSING:
                with self._lock:
                    for text_hash, raw in zip(missing, raws, strict=True):
                        if raw is not None and len(raw) == EMBEDDING_DIM * 4:
                            vector = _vector_from(raw)
                            self._mirror.vectors[text_hash] = vector
                            found[text_hash] = vector
        return found

    def put_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._mirror.vectors.update(vectors)
        if self._redis is None or not vectors:
            return

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for text_hash, vector in vectors.items():
                pipe.set(self._key("vec", text_hash), _vector_bytes(vector))
            pipe.execute()

        if self._redis_do(write) is _MISSING:
            self._dirty_vectors.update(vectors)

    # ---- posts --------------------------------------------------------------------------
    def get_posts(self, post_ids: Iterable[str]) -> dict[str, PostFeatures]:
        """Features of known posts (from the mirror: this replica writes every post)."""
        with self._lock:
            return {p: self._mirror.posts[p] for p in post_ids if p in self._mirror.posts}

    def all_posts(self) -> dict[str, PostFeatures]:
        with self._lock:
            return dict(self._mirror.posts)

    def put_post(self, post_id: str, features: PostFeatures) -> None:
        with self._lock:
            self._mirror.posts[post_id] = features
        if self._redis is None:
            return
        if (
            self._redis_do(
                lambda r: r.hset(self._key("post", post_id), mapping=self._post_map(features))
            )
            is _MISSING
        ):
            self._dirty_posts.add(post_id)

    @staticmethod
    def _post_map(features: PostFeatures) -> dict[str, str]:
        return {
            "text_hash": features.text_hash or "",
            "created_at_s": repr(features.created_at_s),
            "flagged": "1" if features.flagged else "0",
            "tags": json.dumps(features.tags),
        }

    # ---- popularity ---------------------------------------------------------------------
    def add_popularity(self, post_id: str, amount: float) -> None:
        with self._lock:
            self._mirror.popularity[post_id] = self._mirror.popularity.get(post_id, 0.0) + amount
        if self._redis is None:
            return
        if self._redis_do(lambda r: r.hincrbyfloat(self._key("pop"), post_id, amount)) is _MISSING:
            self._dirty_posts.add(post_id)

    def get_popularity(self, post_ids: list[str]) -> np.ndarray:
        with self._lock:
            return np.array([self._mirror.popularity.get(p, 0.0) for p in post_ids])

    # ---- users --------------------------------------------------------------------------
    def get_profile(self, user_id: str) -> Profile | None:
        raw = (
            self._redis_do(lambda r: r.hgetall(self._key("profile", user_id)))
            if self._redis is not None
            else _MISSING
        )
        with self._lock:
            if raw is not _MISSING and user_id not in self._dirty_users:
                if not raw:
                    return self._mirror.profiles.get(user_id)
                profile = Profile(
                    _vector_from(raw[b"vector"]),
                    float(raw[b"weight"]),
                    float(raw[b"t_ref_s"]),
                    int(raw[b"events"]),
                )
                self._mirror.profiles[user_id] = profile
                return profile
            return self._mirror.profiles.get(user_id)

    def put_profile(self, user_id: str, profile: Profile) -> None:
        with self._lock:
            self._mirror.profiles[user_id] = profile
        if self._redis is None:
            return
        mapping = {
            "vector": _vector_bytes(profile.vector),
            "weight": repr(profile.weight),
            "t_ref_s": repr(profile.t_ref_s),
            "events": str(profile.events),
        }
        if (
            self._redis_do(lambda r: r.hset(self._key("profile", user_id), mapping=mapping))
            is _MISSING
        ):
            self._dirty_users.add(user_id)

    def get_hidden(self, user_id: str) -> set[str]:
        raw = (
            self._redis_do(lambda r: r.smembers(self._key("hidden", user_id)))
            if self._redis is not None
            else _MISSING
        )
        with self._lock:
            if raw is not _MISSING and user_id not in self._dirty_users:
                hidden = {item.decode("utf-8") for item in raw}
                self._mirror.hidden[user_id] = hidden
                return set(hidden)
            return set(self._mirror.hidden.get(user_id, set()))

    def add_hidden(self, user_id: str, post_id: str) -> None:
        with self._lock:
            self._mirror.hidden.setdefault(user_id, set()).add(post_id)
        if self._redis is None:
            return
        if self._redis_do(lambda r: r.sadd(self._key("hidden", user_id), post_id)) is _MISSING:
            self._dirty_users.add(user_id)

    # ---- feed cache ---------------------------------------------------------------------
    def cache_get(self, user_id: str, key: str) -> str | None:
        raw = (
            self._redis_do(lambda r: r.get(self._key("feed", user_id, key)))
            if self._redis is not None
            else _MISSING
        )
        if raw is not _MISSING:
            return None if raw is None else str(raw.decode("utf-8"))
        with self._lock:
            entry = self._mirror.cache.get((user_id, key))
            if entry is None or entry[0] < time.monotonic():
                self._mirror.cache.pop((user_id, key), None)
                return None
            return entry[1]

    def cache_put(self, user_id: str, key: str, value: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            return

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.set(self._key("feed", user_id, key), value, px=int(ttl_s * 1000))
            pipe.sadd(self._key("feedkeys", user_id), key)
            pipe.expire(self._key("feedkeys", user_id), int(ttl_s) + 1)
            pipe.execute()

        if self._redis is not None and self._redis_do(write) is not _MISSING:
            return
        with self._lock:
            self._mirror.cache[(user_id, key)] = (time.monotonic() + ttl_s, value)

    def cache_drop_user(self, user_id: str) -> None:
        """Forget every cached feed of the user (their profile or hidden set changed)."""
        with self._lock:
            for cache_key in [k for k in self._mirror.cache if k[0] == user_id]:
                del self._mirror.cache[cache_key]

        def drop(r: Any) -> None:
            keys = [k.decode("utf-8") for k in r.smembers(self._key("feedkeys", user_id))]
            r.delete(self._key("feedkeys", user_id), *[self._key("feed", user_id, k) for k in keys])

        if self._redis is not None:
            self._redis_do(drop)

    # ---- start-up and recovery ----------------------------------------------------------
    def _load_mirror(self) -> None:
        """Popularity from Redis into the mirror (posts come back with the document store)."""
        raw = self._redis_do(lambda r: r.hgetall(self._key("pop")))
        if raw is not _MISSING:
            with self._lock:
                self._mirror.popularity = {k.decode("utf-8"): float(v) for k, v in raw.items()}

    def _resync(self) -> None:
        with self._lock:
            vectors = {h: self._mirror.vectors[h] for h in self._dirty_vectors}
            posts = {p: self._mirror.posts.get(p) for p in self._dirty_posts}
            popularity = {p: self._mirror.popularity.get(p, 0.0) for p in self._dirty_posts}
            profiles = {u: self._mirror.profiles.get(u) for u in self._dirty_users}
            hidden = {u: set(self._mirror.hidden.get(u, set())) for u in self._dirty_users}

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for text_hash, vector in vectors.items():
                pipe.set(self._key("vec", text_hash), _vector_bytes(vector))
            for post_id, features in posts.items():
                if features is not None:
                    pipe.hset(self._key("post", post_id), mapping=self._post_map(features))
                pipe.hset(self._key("pop"), post_id, repr(popularity[post_id]))
            for user_id, profile in profiles.items():
                if profile is not None:
                    pipe.hset(
                        self._key("profile", user_id),
                        mapping={
                            "vector": _vector_bytes(profile.vector),
                            "weight": repr(profile.weight),
                            "t_ref_s": repr(profile.t_ref_s),
                            "events": str(profile.events),
                        },
                    )
                if hidden[user_id]:
                    pipe.sadd(self._key("hidden", user_id), *sorted(hidden[user_id]))
            pipe.execute()
            # Feeds cached in Redis before the outage predate these changes.
            for user_id in profiles:
                cached = [k.decode("utf-8") for k in r.smembers(self._key("feedkeys", user_id))]
                r.delete(
                    self._key("feedkeys", user_id),
                    *[self._key("feed", user_id, k) for k in cached],
                )

        self._up = True
        if self._redis_do(write) is not _MISSING:
            self._dirty_vectors.clear()
            self._dirty_posts.clear()
            self._dirty_users.clear()

    def clear(self) -> int:
        """Delete every key under this store's prefix (tests, resets); returns the count."""
        with self._lock:
            self._mirror = _Mirror()
        if self._redis is None:
            return 0

        def delete_all(r: Any) -> int:
            keys = list(r.scan_iter(match=self._prefix + "*", count=1000))
            return int(r.delete(*keys)) if keys else 0

        deleted = self._redis_do(delete_all)
        return 0 if deleted is _MISSING else int(deleted)
