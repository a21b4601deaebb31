"""Feature store: post vectors, post features, popularity, user profiles, hidden posts, feed cache.

With ``REDIS_URL`` set, Redis holds them (shared, survives restarts, and later features read the
post vectors by text hash from it). An in-process mirror always receives every write too, so
when Redis stops answering (the outage rule of `storage.redis`) the store keeps serving from the
mirror, says so in `info`, pings Redis again once ``retry_s`` has passed and, once it is back,
writes what changed meanwhile to it.

Without ``REDIS_URL`` the mirror is the store.

Outage write-back merges, it never overwrites: profile updates and popularity increments made
while Redis was down are kept as deltas and applied onto what Redis holds when it answers
again (a profile Redis does not hold is written from the mirror). The pending writes are taken
in one step under the store's lock and put back if the write-back fails, so nothing written
meanwhile is cleared without being written.

Redis layout (``P`` is the key prefix, default ``sp:rec:``)::

    P vec:<text_hash>        float32 bytes of the unit vector (immutable: keyed by the text)
    P post:<post_id>         hash: text_hash, created_at_s, flagged, tags (json)
    P pop                    hash: post_id -> engagement (sum of positive reaction weights)
    P profile:<user_id>      hash: vector (float32 bytes), weight, t_ref_s, events
    P hidden:<user_id>       set of post ids the user hid or reported
    P co:<post_a>            hash: post_b -> pair count, for post_a < post_b (co-occurrence)
    P cousers                hash: post_id -> users who reacted to it (co-occurrence)
    P cohist:<user_id>       list: the user's last positive posts (co-occurrence window)
    P events                 marker: events were applied here (absent: rebuild from events)
    P feed:<user_id>:<key>   cached feed answer (json), with a TTL
    P feedkeys:<user_id>     set of that user's cached feed keys (to drop them together)
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

import numpy as np
import redis

from models.embeddings import EMBEDDING_DIM
from models.ranking import CoOccurrence, Profile, update_profile
from storage.redis import RedisConnection, RedisGate, SyncClient

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Short timeouts: a dead Redis must cost a feed request milliseconds, not seconds, before the
# mirror answers.
_SOCKET_TIMEOUT_S = 0.5


class _Missing(enum.Enum):
    """What `FeatureStore._redis_do` returns when Redis did not answer."""

    MISSING = enum.auto()


_MISSING: Final = _Missing.MISSING


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
    cooccurrence: CoOccurrence = field(default_factory=CoOccurrence)
    events_applied: bool = False


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _vector_from(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.float32).copy()


def _post_map(features: PostFeatures) -> dict[FieldT, EncodableT]:
    return {
        "text_hash": features.text_hash or "",
        "created_at_s": repr(features.created_at_s),
        "flagged": "1" if features.flagged else "0",
        "tags": json.dumps(features.tags),
    }


def _profile_map(profile: Profile) -> dict[FieldT, EncodableT]:
    return {
        "vector": _vector_bytes(profile.vector),
        "weight": repr(profile.weight),
        "t_ref_s": repr(profile.t_ref_s),
        "events": str(profile.events),
    }


def _profile_from(raw: Mapping[bytes | str, bytes | str]) -> Profile:
    vector = raw[b"vector"]
    assert isinstance(vector, bytes)  # the client never decodes responses
    return Profile(
        _vector_from(vector), float(raw[b"weight"]), float(raw[b"t_ref_s"]), int(raw[b"events"])
    )


def _text(raw: bytes | str) -> str:
    """A member or value read back as text (the client answers bytes)."""
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


@dataclass
class _Pending:
    """What changed while Redis was down, to write back when it answers again."""

    vectors: set[str] = field(default_factory=set)
    posts: set[str] = field(default_factory=set)
    hidden: set[str] = field(default_factory=set)
    # Profile updates as (post vector, weight, at_s, half_life_s), in the order applied.
    profile_deltas: dict[str, list[tuple[np.ndarray, float, float, float]]] = field(
        default_factory=dict
    )
    # Profiles written whole while Redis was down (`put_profile`): written back whole.
    profiles: set[str] = field(default_factory=set)
    popularity: dict[str, float] = field(default_factory=dict)
    # Co-occurrence increments (pair a < b, and users per post) and users whose window to
    # write back whole.
    pairs: dict[tuple[str, str], float] = field(default_factory=dict)
    users_of: dict[str, float] = field(default_factory=dict)
    histories: set[str] = field(default_factory=set)
    events_marker: bool = False

    def users(self) -> set[str]:
        """Users whose Redis state is behind the mirror."""
        return self.hidden | self.profiles | set(self.profile_deltas)

    def add_cooccurrence(
        self, pairs: Mapping[tuple[str, str], float], users_of: Mapping[str, float]
    ) -> None:
        """Keep co-occurrence increments Redis did not take."""
        for pair, amount in pairs.items():
            self.pairs[pair] = self.pairs.get(pair, 0.0) + amount
        for post_id, amount in users_of.items():
            self.users_of[post_id] = self.users_of.get(post_id, 0.0) + amount

    def merge(self, later: _Pending) -> None:
        """Add `later` (pending writes made after these were taken) to these."""
        self.vectors |= later.vectors
        self.posts |= later.posts
        self.hidden |= later.hidden
        self.profiles |= later.profiles
        for user_id, deltas in later.profile_deltas.items():
            self.profile_deltas.setdefault(user_id, []).extend(deltas)
        for post_id, amount in later.popularity.items():
            self.popularity[post_id] = self.popularity.get(post_id, 0.0) + amount
        self.add_cooccurrence(later.pairs, later.users_of)
        self.histories |= later.histories
        self.events_marker = self.events_marker or later.events_marker


class FeatureStore:
    """Redis-backed feature store with an in-process mirror that takes over when Redis fails."""

    def __init__(
        self,
        redis_url: str = "",
        key_prefix: str = "sp:rec:",
        retry_s: float = 5.0,
        neighbour_history: int = 50,
    ) -> None:
        self._prefix = key_prefix
        self._neighbour_history = neighbour_history
        self._mirror = self._new_mirror()
        self._lock = threading.RLock()
        # What changed while Redis was down, written to it when it answers again.
        self._pending = _Pending()
        # Writes go to the mirror only (a start-up replay while Redis is unreachable: Redis
        # already holds what is replayed, so it must not be written back as deltas).
        self._mirror_only = False
        self._redis: RedisConnection | None = None
        # Why Redis is down, as feed answers and /health say it: the error type only (a
        # client's message names the server, which a feed answer must not show).
        self._down_reason = ""
        if redis_url:
            gate = RedisGate("feature store", retry_s, "serving from the in-process mirror")
            self._redis = RedisConnection(redis_url, gate, _SOCKET_TIMEOUT_S)
            failure = self._ping()
            if failure is None:
                self._load_mirror()
            else:
                self._down_reason = "unreachable at start"

    def _new_mirror(self) -> _Mirror:
        return _Mirror(cooccurrence=CoOccurrence(self._neighbour_history))

    # ---- health -------------------------------------------------------------------------
    @property
    def uses_redis(self) -> bool:
        """Whether a ``REDIS_URL`` was given (whether or not Redis answers now)."""
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

    def _ping(self) -> str | None:
        """None when Redis answers, else the error's type (and Redis is marked down)."""
        assert self._redis is not None
        try:
            self._redis.run(lambda client: client.ping())
        except Exception as exc:  # noqa: BLE001 - any client error means "not available"
            return type(exc).__name__
        return None

    def _available(self) -> bool:
        if self._redis is None:
            return False
        gate = self._redis.gate
        if gate.up:
            return True
        if not gate.available():
            return False
        failure = self._ping()
        if failure is not None:
            self._down_reason = f"unreachable ({failure})"
            return False
        logger.info("feature store: writing back the changes made while redis was down")
        self._resync()
        return gate.up

    def _redis_do(self, action: Callable[[SyncClient], T]) -> T | _Missing:
        """Run ``action(client)`` when Redis is up; ``_MISSING`` when it is not or it fails."""
        if self._redis is None or not self._available():
            return _MISSING
        try:
            return self._redis.run(action)
        except redis.RedisError as exc:  # connection, timeout or server errors: fail over
            self._down_reason = f"failed ({type(exc).__name__})"
            return _MISSING

    def _write(self, action: Callable[[SyncClient], object]) -> bool:
        """Whether a write reached Redis (False without Redis, or when it failed)."""
        return self._redis_do(action) is not _MISSING

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
                        if isinstance(raw, bytes) and len(raw) == EMBEDDING_DIM * 4:
                            vector = _vector_from(raw)
                            self._mirror.vectors[text_hash] = vector
                            found[text_hash] = vector
        return found

    def put_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        """Keep vectors by text hash (mirror and Redis)."""
        with self._lock:
            self._mirror.vectors.update(vectors)
        if self._redis is None or not vectors:
            return

        def write(r: SyncClient) -> None:
            pipe = r.pipeline(transaction=False)
            for text_hash, vector in vectors.items():
                pipe.set(self._key("vec", text_hash), _vector_bytes(vector))
            pipe.execute()

        if self._mirror_only:
            return
        if not self._write(write):
            with self._lock:
                self._pending.vectors.update(vectors)

    # ---- posts --------------------------------------------------------------------------
    def get_posts(self, post_ids: Iterable[str]) -> dict[str, PostFeatures]:
        """Features of known posts (from the mirror: this replica writes every post)."""
        with self._lock:
            return {p: self._mirror.posts[p] for p in post_ids if p in self._mirror.posts}

    def all_posts(self) -> dict[str, PostFeatures]:
        """Every known post's features (a copy)."""
        with self._lock:
            return dict(self._mirror.posts)

    def put_post(self, post_id: str, features: PostFeatures) -> None:
        """Keep one post's features (mirror and Redis)."""
        with self._lock:
            self._mirror.posts[post_id] = features
        if self._redis is None or self._mirror_only:
            return
        if not self._write(
            lambda r: r.hset(self._key("post", post_id), mapping=_post_map(features))
        ):
            with self._lock:
                self._pending.posts.add(post_id)

    # ---- popularity ---------------------------------------------------------------------
    def add_popularity(self, post_id: str, amount: float) -> None:
        """Add `amount` to a post's engagement."""
        with self._lock:
            self._mirror.popularity[post_id] = self._mirror.popularity.get(post_id, 0.0) + amount
        if self._redis is None or self._mirror_only:
            return
        # HINCRBYFLOAT commutes: a direct write while a delta is pending counts once each.
        if not self._write(lambda r: r.hincrbyfloat(self._key("pop"), post_id, amount)):
            with self._lock:
                pending = self._pending.popularity
                pending[post_id] = pending.get(post_id, 0.0) + amount

    def get_popularity(self, post_ids: list[str]) -> np.ndarray:
        """Engagement of each post, in order (0 when unknown)."""
        with self._lock:
            return np.array([self._mirror.popularity.get(p, 0.0) for p in post_ids])

    # ---- users --------------------------------------------------------------------------
    def get_profile(self, user_id: str) -> Profile | None:
        """The user's profile: Redis when it answers and holds it, else the mirror."""
        raw = self._redis_do(lambda r: r.hgetall(self._key("profile", user_id)))
        with self._lock:
            if raw is not _MISSING and user_id not in self._pending.users():
                if not raw:
                    return self._mirror.profiles.get(user_id)
                profile = _profile_from(raw)
                self._mirror.profiles[user_id] = profile
                return profile
            return self._mirror.profiles.get(user_id)

    def put_profile(self, user_id: str, profile: Profile) -> None:
        """Keep the user's profile (mirror and Redis)."""
        with self._lock:
            self._mirror.profiles[user_id] = profile
        if self._redis is None or self._mirror_only:
            return
        mapping = _profile_map(profile)
        if not self._write(lambda r: r.hset(self._key("profile", user_id), mapping=mapping)):
            with self._lock:
                self._pending.profiles.add(user_id)

    def add_to_profile(
        self, user_id: str, post_vector: np.ndarray, weight: float, at_s: float, half_life_s: float
    ) -> Profile:
        """Add one reaction to the user's profile (`models.ranking.update_profile`).

        While Redis is down (or deltas of the user are still pending) the update is kept as
        a delta, applied onto Redis's profile when it answers again: an outage never replaces
        a full profile with one built from outage-time events only.
        """
        with self._lock:
            pending = user_id in self._pending.profile_deltas
            current = self._mirror.profiles.get(user_id) if pending else self.get_profile(user_id)
            profile = update_profile(current, post_vector, weight, at_s, half_life_s)
            self._mirror.profiles[user_id] = profile
            if self._redis is None or self._mirror_only:
                return profile
            delta = (np.asarray(post_vector, dtype=np.float32), weight, at_s, half_life_s)
            if pending:
                self._pending.profile_deltas[user_id].append(delta)
                return profile
            mapping = _profile_map(profile)
            if not self._write(lambda r: r.hset(self._key("profile", user_id), mapping=mapping)):
                self._pending.profile_deltas.setdefault(user_id, []).append(delta)
            return profile

    def get_hidden(self, user_id: str) -> set[str]:
        """Post ids the user hid or reported."""
        raw = self._redis_do(lambda r: r.smembers(self._key("hidden", user_id)))
        with self._lock:
            if raw is not _MISSING and user_id not in self._pending.hidden:
                hidden = {_text(item) for item in raw}
                self._mirror.hidden[user_id] = hidden
                return set(hidden)
            return set(self._mirror.hidden.get(user_id, set()))

    def add_hidden(self, user_id: str, post_id: str) -> None:
        """Remember that the user hid or reported `post_id`."""
        with self._lock:
            self._mirror.hidden.setdefault(user_id, set()).add(post_id)
        if self._redis is None or self._mirror_only:
            return
        if not self._write(lambda r: r.sadd(self._key("hidden", user_id), post_id)):
            with self._lock:
                self._pending.hidden.add(user_id)

    # ---- a batch of events, in one step ---------------------------------------------------
    def apply_events(
        self,
        popularity: Mapping[str, float],
        hidden: Mapping[str, Iterable[str]],
        reactions: Mapping[str, list[tuple[np.ndarray, float, float]]],
        half_life_s: float,
    ) -> None:
        """Apply one request's events: popularity increments per post, posts hidden per user,
        and reactions per user (``(post vector, weight, at_s)``, in order) to their profiles.

        One Redis round trip reads the profiles and one pipeline writes everything, instead
        of a few calls per event. The outage rule is `add_to_profile`'s and
        `add_popularity`'s: what Redis did not take is kept as deltas and merged later.
        """
        redis_writes = self._redis is not None and not self._mirror_only
        with self._lock:
            for post_id, amount in popularity.items():
                self._mirror.popularity[post_id] = (
                    self._mirror.popularity.get(post_id, 0.0) + amount
                )
            hidden_sets = {user_id: set(posts) for user_id, posts in hidden.items()}
            for user_id, posts in hidden_sets.items():
                self._mirror.hidden.setdefault(user_id, set()).update(posts)
            behind = set(self._pending.profile_deltas)
            fetch = [u for u in reactions if u not in behind] if redis_writes else []
            remote: dict[str, Profile] = {}
            read_ok = True
            if fetch:

                def read(r: SyncClient) -> list[object]:
                    pipe = r.pipeline(transaction=False)
                    for user_id in fetch:
                        pipe.hgetall(self._key("profile", user_id))
                    return list(pipe.execute())

                raws = self._redis_do(read)
                if raws is _MISSING:
                    read_ok = False
                else:
                    for user_id, raw in zip(fetch, raws, strict=True):
                        if raw:
                            remote[user_id] = _profile_from(raw)  # type: ignore[arg-type]
            profiles: dict[str, Profile] = {}
            for user_id, updates in reactions.items():
                current = remote.get(user_id) or self._mirror.profiles.get(user_id)
                for vector, weight, at_s in updates:
                    current = update_profile(current, vector, weight, at_s, half_life_s)
                if current is not None:
                    profiles[user_id] = current
                    self._mirror.profiles[user_id] = current
            if not redis_writes:
                return
            direct = {u: p for u, p in profiles.items() if u not in behind}

            def write(r: SyncClient) -> None:
                pipe = r.pipeline(transaction=False)
                for post_id, amount in popularity.items():
                    pipe.hincrbyfloat(self._key("pop"), post_id, amount)
                for user_id, posts in hidden_sets.items():
                    if posts:
                        pipe.sadd(self._key("hidden", user_id), *sorted(posts))
                for user_id, profile in direct.items():
                    pipe.hset(self._key("profile", user_id), mapping=_profile_map(profile))
                pipe.execute()

            written = read_ok and self._write(write)
            for user_id, updates in reactions.items():
                if written and user_id not in behind:
                    continue
                deltas = self._pending.profile_deltas.setdefault(user_id, [])
                deltas.extend(
                    (np.asarray(v, dtype=np.float32), w, at_s, half_life_s)
                    for v, w, at_s in updates
                )
            if not written:
                for post_id, amount in popularity.items():
                    pending = self._pending.popularity
                    pending[post_id] = pending.get(post_id, 0.0) + amount
                self._pending.hidden.update(u for u, posts in hidden_sets.items() if posts)

    # ---- co-occurrence (item-to-item neighbours) -----------------------------------------
    def observe_cooccurrence(self, reactions: Iterable[tuple[str, str]]) -> None:
        """Positive reactions ``(user_id, post_id)``, in order, into the co-occurrence counts
        (`models.ranking.CoOccurrence`): the mirror first, then one Redis pipeline of the
        request's summed increments."""
        pairs: dict[tuple[str, str], float] = {}
        users_of: dict[str, float] = {}
        touched: dict[str, None] = {}
        with self._lock:
            model = self._mirror.cooccurrence
            for user_id, post_id in reactions:
                partners = model.observe(user_id, post_id)
                if partners is None:
                    continue
                users_of[post_id] = users_of.get(post_id, 0.0) + 1.0
                touched[user_id] = None
                for other in partners:
                    pair = (other, post_id) if other < post_id else (post_id, other)
                    pairs[pair] = pairs.get(pair, 0.0) + 1.0
            if self._redis is None or self._mirror_only or not users_of:
                return
            windows = {u: model.history(u) for u in touched}

            def write(r: SyncClient) -> None:
                pipe = r.pipeline(transaction=False)
                for (a, b), amount in pairs.items():
                    pipe.hincrbyfloat(self._key("co", a), b, amount)
                for post_id, amount in users_of.items():
                    pipe.hincrbyfloat(self._key("cousers"), post_id, amount)
                for user_id, window in windows.items():
                    key = self._key("cohist", user_id)
                    pipe.delete(key)
                    if window:
                        pipe.rpush(key, *window)
                pipe.execute()

            if not self._write(write):
                self._pending.add_cooccurrence(pairs, users_of)
                self._pending.histories.update(windows)

    def neighbour_scores(self, user_id: str, post_ids: list[str]) -> np.ndarray | None:
        """The co-occurrence term per post (best 1), or None when it cannot say anything."""
        with self._lock:
            return self._mirror.cooccurrence.scores(user_id, post_ids)

    def neighbour_history(self, user_id: str) -> list[str]:
        """The user's co-occurrence window (their last positive posts, oldest first)."""
        with self._lock:
            return self._mirror.cooccurrence.history(user_id)

    # ---- feed cache ---------------------------------------------------------------------
    def cache_get(self, user_id: str, key: str) -> str | None:
        """A cached feed answer of the user, or None."""
        raw = self._redis_do(lambda r: r.get(self._key("feed", user_id, key)))
        if raw is not _MISSING:
            return None if raw is None else _text(raw)
        with self._lock:
            entry = self._mirror.cache.get((user_id, key))
            if entry is None or entry[0] < time.monotonic():
                self._mirror.cache.pop((user_id, key), None)
                return None
            return entry[1]

    def cache_put(self, user_id: str, key: str, value: str, ttl_s: float) -> None:
        """Cache a feed answer for `ttl_s` (Redis, else the mirror)."""
        if ttl_s <= 0:
            return

        def write(r: SyncClient) -> None:
            pipe = r.pipeline(transaction=False)
            pipe.set(self._key("feed", user_id, key), value, px=int(ttl_s * 1000))
            pipe.sadd(self._key("feedkeys", user_id), key)
            pipe.expire(self._key("feedkeys", user_id), int(ttl_s) + 1)
            pipe.execute()

        if self._write(write):
            return
        with self._lock:
            self._mirror.cache[(user_id, key)] = (time.monotonic() + ttl_s, value)

    def cache_drop_user(self, user_id: str) -> None:
        """Forget every cached feed of the user (their profile or hidden set changed)."""
        self.cache_drop_users([user_id])

    def cache_drop_users(self, user_ids: Iterable[str]) -> None:
        """Forget every cached feed of these users: one pass over the mirror, two Redis
        round trips for the lot."""
        users = set(user_ids)
        if not users:
            return
        with self._lock:
            for cache_key in [k for k in self._mirror.cache if k[0] in users]:
                del self._mirror.cache[cache_key]
        if self._redis is None:
            return
        ordered = sorted(users)

        def drop(r: SyncClient) -> None:
            reads = r.pipeline(transaction=False)
            for user_id in ordered:
                reads.smembers(self._key("feedkeys", user_id))
            keys: list[str] = []
            for user_id, members in zip(ordered, reads.execute(), strict=True):
                if members:
                    keys.append(self._key("feedkeys", user_id))
                    keys += [self._key("feed", user_id, _text(k)) for k in members]
            if keys:
                r.delete(*keys)

        self._redis_do(drop)

    def _drop_cached_feeds(self, client: SyncClient, user_id: str) -> None:
        keys = [_text(k) for k in client.smembers(self._key("feedkeys", user_id))]
        client.delete(
            self._key("feedkeys", user_id), *[self._key("feed", user_id, k) for k in keys]
        )

    # ---- start-up and recovery ----------------------------------------------------------
    def _load_mirror(self) -> None:
        """Popularity and co-occurrence from Redis into the mirror (posts come back with the
        document store; profiles and hidden sets are read per user)."""
        raw = self._redis_do(lambda r: r.hgetall(self._key("pop")))
        if raw is not _MISSING:
            with self._lock:
                self._mirror.popularity = {_text(k): float(v) for k, v in raw.items()}

        def read_cooccurrence(r: SyncClient) -> CoOccurrence:
            model = CoOccurrence(self._neighbour_history)
            start = len(self._key("co", ""))
            for key in r.scan_iter(match=self._key("co", "*"), count=1000):
                a = _text(key)[start:]
                for b, amount in r.hgetall(key).items():
                    model.add_pair(a, _text(b), float(amount))
            model.users_of = {
                _text(k): float(v) for k, v in r.hgetall(self._key("cousers")).items()
            }
            start = len(self._key("cohist", ""))
            for key in r.scan_iter(match=self._key("cohist", "*"), count=1000):
                window = [_text(p) for p in r.lrange(key, 0, -1)]
                model.histories[_text(key)[start:]] = dict.fromkeys(window)
            return model

        model = self._redis_do(read_cooccurrence)
        if model is not _MISSING:
            with self._lock:
                self._mirror.cooccurrence = model

    def _resync(self) -> None:
        """Write back what changed while Redis was down, merging deltas onto Redis's state.

        Holds the store's lock throughout: a profile read-modify-write must not interleave
        with the merge of that profile's deltas.
        """
        with self._lock:
            taken, self._pending = self._pending, _Pending()
            vectors = {h: self._mirror.vectors[h] for h in taken.vectors}
            posts = {p: self._mirror.posts.get(p) for p in taken.posts}
            hidden = {u: set(self._mirror.hidden.get(u, set())) for u in taken.hidden}
            whole = {u: self._mirror.profiles.get(u) for u in taken.profiles}

            def write(r: SyncClient) -> dict[str, Profile]:
                users = sorted(taken.profile_deltas)
                reads = r.pipeline(transaction=False)
                for user_id in users:
                    reads.hgetall(self._key("profile", user_id))
                merged: dict[str, Profile] = {}
                for user_id, raw in zip(users, reads.execute(), strict=True):
                    if not raw:
                        # Redis lost the profile (e.g. came back empty): the mirror's is the
                        # best copy there is.
                        profile = self._mirror.profiles.get(user_id)
                    else:
                        profile = _profile_from(raw)
                        for vector, weight, at_s, half_life_s in taken.profile_deltas[user_id]:
                            profile = update_profile(profile, vector, weight, at_s, half_life_s)
                    if profile is not None:
                        merged[user_id] = profile
                pipe = r.pipeline(transaction=False)
                for text_hash, vector in vectors.items():
                    pipe.set(self._key("vec", text_hash), _vector_bytes(vector))
                for post_id, features in posts.items():
                    if features is not None:
                        pipe.hset(self._key("post", post_id), mapping=_post_map(features))
                for post_id, amount in taken.popularity.items():
                    pipe.hincrbyfloat(self._key("pop"), post_id, amount)
                for user_id, profile in {**whole, **merged}.items():
                    if profile is not None:
                        pipe.hset(self._key("profile", user_id), mapping=_profile_map(profile))
                for user_id, members in hidden.items():
                    if members:
                        pipe.sadd(self._key("hidden", user_id), *sorted(members))
                for (a, b), amount in taken.pairs.items():
                    pipe.hincrbyfloat(self._key("co", a), b, amount)
                for post_id, amount in taken.users_of.items():
                    pipe.hincrbyfloat(self._key("cousers"), post_id, amount)
                for user_id in taken.histories:
                    window = self._mirror.cooccurrence.history(user_id)
                    pipe.delete(self._key("cohist", user_id))
                    if window:
                        pipe.rpush(self._key("cohist", user_id), *window)
                if taken.events_marker:
                    pipe.set(self._key("events"), "1")
                pipe.hgetall(self._key("pop"))
                popularity = pipe.execute()[-1]
                # The mirror now follows Redis (a replica that started during the outage
                # had no popularity to start from).
                self._mirror.popularity = {_text(k): float(v) for k, v in popularity.items()}
                # Feeds cached in Redis before the outage predate these changes.
                for user_id in taken.users():
                    self._drop_cached_feeds(r, user_id)
                return merged

            merged = self._redis_do(write)
            if merged is _MISSING:
                taken.merge(self._pending)
                self._pending = taken
                return
            self._mirror.profiles.update(merged)

    # ---- events marker and replays --------------------------------------------------------
    def mark_events_applied(self) -> None:
        """Record that events were applied to this store (see `holds_event_state`)."""
        with self._lock:
            self._mirror.events_applied = True
        if self._redis is None or self._mirror_only:
            return
        if not self._write(lambda r: r.set(self._key("events"), "1")):
            with self._lock:
                self._pending.events_marker = True

    def holds_event_state(self) -> bool:
        """Whether profiles, popularity and hidden sets from events are here already.

        False for an empty store (a fresh mirror without Redis, a flushed Redis): the caller
        replays the stored events. Redis state from before the marker existed counts as
        present (a popularity hash, a profile or a hidden set), so it is not counted twice.
        None of it is readable while Redis is down: then only the mirror says.
        """
        with self._lock:
            if self._mirror.events_applied:
                return True

        def probe(r: SyncClient) -> bool:
            if r.exists(self._key("events"), self._key("pop")):
                return True
            for pattern in ("profile:*", "hidden:*"):
                for _ in r.scan_iter(match=self._prefix + pattern, count=1000):
                    return True
            return False

        present = self._redis_do(probe)
        return False if present is _MISSING else bool(present)

    @contextlib.contextmanager
    def mirror_only(self) -> Iterator[None]:
        """Writes inside go to the in-process mirror only, and are not written back later.

        For replaying stored events into the mirror while Redis is unreachable: Redis
        already holds their effect, and a write-back would count them twice.
        """
        with self._lock:
            self._mirror_only = True
            try:
                yield
            finally:
                self._mirror_only = False

    def clear(self) -> int:
        """Delete every key under this store's prefix (tests, resets); returns the count."""
        with self._lock:
            self._mirror = self._new_mirror()
        if self._redis is None:
            return 0

        def delete_all(r: SyncClient) -> int:
            keys = list(r.scan_iter(match=self._prefix + "*", count=1000))
            return int(r.delete(*keys)) if keys else 0

        deleted = self._redis_do(delete_all)
        return 0 if deleted is _MISSING else deleted
