"""The recommender's state and logic: events in, feeds, similar posts and interests out.

One `RecommenderService` owns the document repositories, the feature store and the vector
index, so every reader sees one state. Text never becomes a vector here: callers embed the
texts `missing_vectors` names (through the embedding node) and pass the vectors in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from configs.recommender import RecommenderConfig
from models.answers import json_object
from models.blend import TERMS, BlendWeights
from models.embeddings import text_hash
from models.ranking import (
    CollaborativeModel,
    ScoreWeights,
    blend_scores,
    cosine_to_profile,
    freshness,
    hash_user_id,
    mmr_order,
    popularity_score,
    weighted_topics,
)
from models.recommender import (
    BlendInfo,
    CollaborativeModelInfo,
    CollaborativeTerm,
    ContentTerm,
    DiversityTerm,
    FallbackSnapshot,
    FeedRanking,
    FeedTerms,
    FreshnessTerm,
    ImpressionPage,
    Interaction,
    InteractionIngestSummary,
    Interests,
    InterestTopic,
    LoggedImpression,
    NeighbourTerm,
    NewPost,
    PostIngestSummary,
    RecentPost,
    RecentPosts,
    RecommenderInfo,
    ScoredPost,
    ScoreTerm,
    SimilarPosts,
)
from models.vector_index import PostIndex
from storage.documents import (
    ImpressionRepository,
    InteractionRepository,
    PostRepository,
    open_database,
)
from storage.features import FeatureStore, PostFeatures

logger = logging.getLogger(__name__)

FLAGGING_ACTIONS = frozenset({"flag_for_review", "reject"})
HIDING_TYPES = frozenset({"hide", "report"})
# Feeds are cached as the JSON of the ranking (read back into the same types).
_FEED_CODEC = TypeAdapter(FeedRanking)


def _vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _vector_of(post: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(bytes(post["vector"]), dtype=np.float32).copy()


def log_id(value: str) -> str:
    """A short hash of a user or post id: logs never carry the raw id."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:10]


@dataclass
class _Clusters:
    """K-means clusters of post vectors, labelled by their most common tags."""

    centroids: np.ndarray
    labels: list[str]
    fitted_on: int


# Feeds whose impressions wait for the writer thread; beyond it a feed's rows are dropped
# (counted): the log is best effort, the replica's memory is not.
MAX_QUEUED_IMPRESSION_FEEDS = 1000


class ImpressionWriter:
    """Writes the impressions of served feeds to the log on its own thread, so a feed never
    waits for the document store (a MongoDB that does not answer would hold every feed for its
    server-selection timeout). Feeds queued meanwhile go to the store in one ``insert_many``.
    """

    def __init__(self, log: ImpressionRepository, max_queued_feeds: int) -> None:
        self._log = log
        self._max_queued_feeds = max_queued_feeds
        self._queue: deque[list[dict[str, Any]]] = deque()
        self._writing = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.dropped_unwritten = 0

    def submit(self, documents: list[dict[str, Any]]) -> None:
        """Queue one feed's impressions; drop them (counted) when the queue is full."""
        with self._changed:
            if len(self._queue) >= self._max_queued_feeds:
                self.dropped_unwritten += len(documents)
                return
            self._queue.append(documents)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="impression-writer", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()

    def count_error(self) -> None:
        """Count an impression that could not even be built (no hash secret)."""
        with self._changed:
            self.errors += 1

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued impression was written (or failed); False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._queue and not self._writing, timeout=timeout_s
            )

    def queued(self) -> int:
        """Impressions waiting for the writer."""
        with self._changed:
            return sum(len(feed) for feed in self._queue)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._queue))
                batch = [document for feed in self._queue for document in feed]
                self._queue.clear()
                self._writing = True
            failed = False
            try:
                self._log.record(batch)
            except Exception as exc:  # noqa: BLE001 (the log is best effort; keep the thread)
                failed = True
                logger.warning("%d impressions not logged (%s)", len(batch), type(exc).__name__)
            with self._changed:
                self.errors += int(failed)
                self._writing = False
                self._changed.notify_all()


class RecommenderService:
    """Events, feature store, ranking, similar posts and interests behind one lock."""

    def __init__(
        self,
        config: RecommenderConfig | None = None,
        redis_url: str = "",
        mongodb_url: str = "",
        redis_key_prefix: str = "sp:rec:",
    ) -> None:
        self.config = config or RecommenderConfig()
        database, self.documents_info = open_database(mongodb_url)
        self.posts = PostRepository(database)
        self.interactions = InteractionRepository(database)
        self.impression_log = ImpressionRepository(
            database, self.config.impressions.max_impressions
        )
        self.impression_writer = ImpressionWriter(self.impression_log, MAX_QUEUED_IMPRESSION_FEEDS)
        self.features = FeatureStore(
            redis_url,
            redis_key_prefix,
            self.config.redis_retry_s,
            neighbour_history=self.config.neighbour_history,
        )
        self.index = PostIndex()
        self.collaborative: CollaborativeModel | None = None
        self._collaborative_path: str | None = None
        self._collaborative_error: str | None = None
        self.blend: BlendWeights | None = None
        self._blend_path: str | None = None
        self._blend_error: str | None = None
        self._clusters: _Clusters | None = None
        # Part of every feed cache key: bumped when moderation flags or clears a post, so no
        # cached feed outlives a moderation change; random per process, so a restart starts
        # from fresh answers too.
        self._boot_id = uuid.uuid4().hex[:8]
        self._moderation_epoch = 0
        # Bumped whenever a post is stored or changed: readers that keep results computed
        # over the posts (the Trends node's snapshot) compare it to know theirs is behind.
        self._posts_version = 0
        # Writes (events) are serialised; reads run alongside them on consistent snapshots.
        self._write_lock = threading.Lock()
        # Applied by this replica, the store's `applied` flag not yet written (its write
        # failed): never applied again, flagged on the next ingest.
        self._applied_unmarked: set[str] = set()
        self._rebuild()
        self.reconfigure(self.config)

    # ---- configuration ------------------------------------------------------------------
    def reconfigure(self, config: RecommenderConfig) -> None:
        """Apply weights, half-lives and TTLs; reload the collaborative model and the learned
        blend when their paths change."""
        self.config = config
        self.impression_log.max_impressions = config.impressions.max_impressions
        self._load_blend(config.blend_weights_path)
        path = config.collaborative_model_path
        if path == self._collaborative_path:
            return
        self._collaborative_path = path
        self.collaborative, self._collaborative_error = None, None
        if path:
            try:
                self.collaborative = CollaborativeModel.load(path)
                logger.info("collaborative model %s loaded", self.collaborative.version)
            except (OSError, ValueError) as exc:
                # The feed keeps working without the term; /health and each answer say why.
                self._collaborative_error = f"collaborative model failed to load: {exc}"
                logger.error("%s", self._collaborative_error)

    def _load_blend(self, path: str | None) -> None:
        if path == self._blend_path:
            return
        self._blend_path = path
        self.blend, self._blend_error = None, None
        if path:
            try:
                self.blend = BlendWeights.load(path)
                logger.info("learned blend %s loaded", self.blend.version)
            except (OSError, ValueError) as exc:
                # The hand-set weights keep ranking; each answer and /health say why.
                self._blend_error = f"learned blend failed to load: {exc}"
                logger.error("%s", self._blend_error)

    def weights(self) -> ScoreWeights:
        """The term weights that rank now: the learned blend's when one is loaded, else the
        configured (hand-set) ``weights``."""
        if self.blend is not None:
            return self.blend.weights
        configured = self.config.weights
        return ScoreWeights(
            content=configured.content,
            freshness=configured.freshness,
            popularity=configured.popularity,
            collaborative=configured.collaborative,
            neighbour=configured.neighbour,
        )

    def blend_version(self) -> str:
        """``hand-set`` or the learned blend's version: which weights ranked a feed."""
        return self.blend.version if self.blend is not None else "hand-set"

    def _rebuild(self) -> None:
        """Bring the state back after a restart: posts and the index from the document store,
        then profiles, popularity and hidden posts from the stored events.

        Vectors the feature store lost (a flushed Redis, no Redis) come from the post
        documents. An empty feature store gets every stored event replayed; one that holds
        event state gets only the events stored but never applied (a failure came between).
        While Redis is unreachable the replay fills the in-process mirror only: Redis holds
        that state already and must not receive it twice once it answers.
        """
        posts = list(self.posts.all())
        vectors = self.features.get_vectors(p["text_hash"] for p in posts if p.get("text_hash"))
        recovered = {
            p["text_hash"]: _vector_of(p)
            for p in posts
            if p.get("text_hash") and p["text_hash"] not in vectors and p.get("vector")
        }
        if recovered:
            self.features.put_vectors(recovered)
            vectors.update(recovered)
        for post in posts:
            features = self._features_of(post)
            self.features.put_post(post["_id"], features)
            vector = vectors.get(post.get("text_hash") or "")
            if vector is not None:
                self.index.upsert(post["_id"], vector)
                self.index.set_hidden(post["_id"], features.flagged)
        with self._write_lock:
            if self.features.holds_event_state():
                events = self.interactions.unapplied()
                replayed = "unapplied"
                self._apply(events)
            else:
                events = list(self.interactions.all_by_time())
                replayed = "all"
                if self.features.uses_redis and not self.features.redis_up():
                    with self.features.mirror_only():
                        self._apply(events)
                else:
                    self._apply(events)
            self.interactions.mark_applied(e["_id"] for e in events if not e.get("applied"))
        logger.info(
            "recommender rebuilt: %d posts, %d indexed, %d events replayed (%s)",
            len(posts),
            len(self.index),
            len(events),
            replayed,
        )

    # ---- events -------------------------------------------------------------------------
    def missing_vectors(self, posts: Sequence[NewPost]) -> dict[str, str]:
        """``{text_hash: text}`` for post texts that have no stored vector yet."""
        hashes = {text_hash(p.text): p.text for p in posts if p.text.strip()}
        stored = self.features.get_vectors(hashes)
        return {h: text for h, text in hashes.items() if h not in stored}

    @staticmethod
    def _features_of(post: dict[str, Any]) -> PostFeatures:
        return PostFeatures(
            text_hash=post.get("text_hash") or None,
            created_at_s=float(post["created_at_s"]),
            flagged=post.get("moderation_action") in FLAGGING_ACTIONS,
            tags=list(post.get("tags", [])),
        )

    def ingest_posts(
        self, posts: Sequence[NewPost], new_vectors: dict[str, list[float]] | None = None
    ) -> PostIngestSummary:
        """Store posts (upsert by ``post_id``) with their vectors; re-sent posts change nothing.

        ``new_vectors`` holds the vectors `missing_vectors` asked for, keyed by text hash.
        """
        vectors = {h: np.asarray(v, dtype=np.float32) for h, v in (new_vectors or {}).items()}
        if vectors:
            self.features.put_vectors(vectors)
        accepted = unchanged = reused = 0
        with self._write_lock:
            existing = self.posts.get_many(p.post_id for p in posts)
            hashes = [text_hash(p.text) for p in posts if p.text.strip()]
            stored = self.features.get_vectors(hashes)
            for post in posts:
                document = self._document_of(post)
                before = existing.get(post.post_id)
                if before is not None and {k: v for k, v in before.items() if k != "vector"} == (
                    document
                ):
                    unchanged += 1
                    continue
                previous = self.features.get_posts([post.post_id]).get(post.post_id)
                vector = stored.get(document["text_hash"] or "")
                # Kept with the post too: a feature store that lost its vectors (flushed
                # Redis, no Redis) gets them back at start-up without the embedder.
                stored_document = (
                    document if vector is None else {**document, "vector": _vector_bytes(vector)}
                )
                self.posts.upsert(stored_document)
                existing[post.post_id] = document
                features = self._features_of(document)
                if previous is not None and previous.flagged != features.flagged:
                    self._moderation_epoch += 1
                self.features.put_post(post.post_id, features)
                vector = stored.get(features.text_hash or "")
                if vector is not None:
                    if features.text_hash not in vectors:
                        reused += 1
                    self.index.upsert(post.post_id, vector)
                elif features.text_hash is not None:
                    logger.warning(
                        "post %s has no vector; it is ranked without content",
                        log_id(post.post_id),
                    )
                self.index.set_hidden(post.post_id, features.flagged)
                accepted += 1
            self._posts_version += accepted
        return PostIngestSummary(
            accepted=accepted, unchanged=unchanged, embedded=len(vectors), reused_vectors=reused
        )

    @staticmethod
    def _document_of(post: NewPost) -> dict[str, Any]:
        return {
            "_id": post.post_id,
            "author_id": post.author_id,
            "text": post.text,
            "text_hash": text_hash(post.text) if post.text.strip() else None,
            "image_urls": list(post.image_urls),
            "tags": list(post.tags),
            "created_at_s": float(post.created_at_s),
            "moderation_action": post.moderation_action,
        }

    def ingest_interactions(self, events: Sequence[Interaction]) -> InteractionIngestSummary:
        """Store new interactions (by ``event_id``) and update profiles, popularity, filters.

        Each event is stored with ``applied: false`` first, applied, then flagged applied. An
        event id seen before and applied, in an earlier batch or earlier in this one, changes
        nothing; one stored by an attempt that failed before applying it is applied now (and
        counted as accepted), so a client's retry completes what the failure left undone.
        Interactions on posts not (yet) known are stored and count for the hide filter, but
        cannot move a profile: there is no vector to move it by.
        """
        duplicates = 0
        with self._write_lock:
            self._mark_applied_now()
            stored = self.interactions.get_many(e.event_id for e in events)
            seen: set[str] = set(self._applied_unmarked)
            fresh: list[dict[str, Any]] = []
            to_apply: list[dict[str, Any]] = []
            for event in events:
                previous = stored.get(event.event_id)
                if event.event_id in seen or (
                    previous is not None and previous.get("applied", True)
                ):
                    duplicates += 1
                    continue
                seen.add(event.event_id)
                if previous is not None:
                    to_apply.append(previous)  # stored by a failed attempt: the stored one counts
                    continue
                document = {
                    "_id": event.event_id,
                    "user_id": event.user_id,
                    "post_id": event.post_id,
                    "type": event.type,
                    "timestamp_s": float(event.timestamp_s),
                    "applied": False,
                }
                fresh.append(document)
                to_apply.append(document)
            self.interactions.insert_many(fresh)
            unknown, unknown_events = self._apply(to_apply)
            self._applied_unmarked.update(d["_id"] for d in to_apply)
            self._mark_applied_now()
        return InteractionIngestSummary(
            accepted=len(to_apply),
            duplicates=duplicates,
            unknown_post_ids=tuple(unknown),
            unknown_post_events=unknown_events,
        )

    def _mark_applied_now(self) -> None:
        """Flag applied events in the store; kept in memory (so never applied twice by this
        replica) until the flag is written."""
        if self._applied_unmarked:
            self.interactions.mark_applied(self._applied_unmarked)
            self._applied_unmarked.clear()

    def _apply(self, events: Sequence[dict[str, Any]]) -> tuple[list[str], int]:
        """Update hidden sets, popularity and profiles from stored events, batched: the
        request's changes are summed per post and per user and written in one step.

        Returns the unknown posts (each once) and how many events named them. Callers hold
        the write lock.
        """
        weights = self.config.event_weights
        unknown: dict[str, None] = {}
        unknown_events = 0
        if not events:
            return [], 0
        posts = self.features.get_posts(e["post_id"] for e in events)
        vectors = self.features.get_vectors(
            p.text_hash for p in posts.values() if p.text_hash is not None
        )
        popularity: dict[str, float] = {}
        hidden: dict[str, set[str]] = {}
        reactions: dict[str, list[tuple[np.ndarray, float, float]]] = {}
        positive: list[tuple[str, str]] = []
        for event in events:
            user_id, post_id, kind = event["user_id"], event["post_id"], event["type"]
            weight = getattr(weights, kind)
            if kind in HIDING_TYPES:
                hidden.setdefault(user_id, set()).add(post_id)
            post = posts.get(post_id)
            if post is None:
                unknown[post_id] = None
                unknown_events += 1
                continue
            if weight > 0:
                popularity[post_id] = popularity.get(post_id, 0.0) + weight
            if weight >= self.config.neighbour_min_event_weight:
                positive.append((user_id, post_id))
            vector = vectors.get(post.text_hash or "")
            if vector is None or weight == 0:
                continue
            reactions.setdefault(user_id, []).append((vector, weight, float(event["timestamp_s"])))
        self.features.apply_events(popularity, hidden, reactions, self.config.profile_half_life_s)
        self.features.observe_cooccurrence(positive)
        self.features.cache_drop_users(set(hidden) | set(reactions) | {u for u, _ in positive})
        self.features.mark_events_applied()
        return list(unknown), unknown_events

    # ---- feed ---------------------------------------------------------------------------
    def rank_feed(
        self,
        user_id: str,
        candidate_post_ids: list[str],
        limit: int,
        now_s: float | None = None,
        use_cache: bool = True,
    ) -> FeedRanking:
        """Rank candidates for a user: blended score, MMR diversity, filters, cache."""
        candidates = list(dict.fromkeys(candidate_post_ids))
        cache_key = hashlib.sha256(
            json.dumps(
                [
                    candidates,
                    limit,
                    now_s,
                    self._boot_id,
                    self._moderation_epoch,
                    self.blend_version(),
                ],
                separators=(",", ":"),
            ).encode("utf-8")
        ).hexdigest()[:24]
        if use_cache and self.config.cache_ttl_s > 0:
            cached = self.features.cache_get(user_id, cache_key)
            if cached is not None:
                return self._from_cache(_FEED_CODEC.validate_json(cached))
        answer = self._rank(user_id, candidates, limit, time.time() if now_s is None else now_s)
        if use_cache:
            encoded = _FEED_CODEC.dump_json(answer).decode("utf-8")
            self.features.cache_put(user_id, cache_key, encoded, self.config.cache_ttl_s)
        return self._with_degradation(answer)

    def _from_cache(self, answer: FeedRanking) -> FeedRanking:
        # A post flagged since the answer was cached must still disappear at once.
        posts = self.features.get_posts(item.post_id for item in answer.posts)
        kept = tuple(i for i in answer.posts if not posts.get(i.post_id, _UNFLAGGED).flagged)
        return self._with_degradation(replace(answer, posts=kept, cached=True))

    def _with_degradation(self, answer: FeedRanking) -> FeedRanking:
        info = self.features.info()
        degraded = info["status"] != "ok"
        reason = info.get("reason") if degraded else None
        return replace(
            answer, degraded=degraded, degraded_reason=None if reason is None else str(reason)
        )

    def _rank(self, user_id: str, candidates: list[str], limit: int, now_s: float) -> FeedRanking:
        config = self.config
        weights = self.weights()
        known = self.features.get_posts(candidates)
        unknown = [p for p in candidates if p not in known]
        hidden = self.features.get_hidden(user_id)
        filtered = [p for p in candidates if p in known and (known[p].flagged or p in hidden)]
        excluded = set(filtered)
        ids = [p for p in candidates if p in known and p not in excluded]
        profile = self.features.get_profile(user_id)
        personal = profile is not None and profile.is_informative()
        cf_used = self.collaborative is not None and self.collaborative.knows_user(user_id)
        neighbour = (
            self.features.neighbour_scores(user_id, ids) if ids and weights.neighbour > 0 else None
        )
        history = len(self.features.neighbour_history(user_id))
        terms = self._terms(
            weights, personal, cf_used, profile is None, neighbour is not None, history
        )
        result = FeedRanking(
            posts=(),
            unknown_post_ids=tuple(unknown),
            filtered_post_ids=tuple(filtered),
            terms=terms,
            cold_start=not personal and not cf_used and neighbour is None,
        )
        if not ids:
            return result
        features = [known[p] for p in ids]
        stored = self.features.get_vectors(f.text_hash for f in features if f.text_hash)
        vectors = np.zeros((len(ids), 384), dtype=np.float32)
        for row, feature in enumerate(features):
            vector = stored.get(feature.text_hash or "")
            if vector is not None:
                vectors[row] = vector
        fresh = freshness(
            np.array([f.created_at_s for f in features]), now_s, config.freshness_half_life_s
        )
        popular = popularity_score(self.features.get_popularity(ids))
        content = cosine_to_profile(profile.vector, vectors) if personal and profile else None
        collaborative = (
            self.collaborative.scores(user_id, ids)
            if cf_used and self.collaborative is not None
            else None
        )
        scores = blend_scores(weights, fresh, popular, content, collaborative, neighbour)
        order = mmr_order(scores, vectors, limit, config.mmr_lambda)
        ranked = tuple(ScoredPost(ids[i], round(float(scores[i]), 6)) for i in order)
        if config.impressions.enabled and order:
            values = {
                "content": content,
                "freshness": fresh,
                "popularity": popular,
                "collaborative": collaborative,
                "neighbour": neighbour,
            }
            self._log_impressions(user_id, [ids[i] for i in order], order, values, now_s)
        return replace(result, posts=ranked)

    def _log_impressions(
        self,
        user_id: str,
        shown: list[str],
        rows: list[int],
        values: dict[str, np.ndarray | None],
        now_s: float,
    ) -> None:
        """One impression per shown post: hashed user, post, time, position, term values,
        handed to the writer thread.

        A failure (the document store down, no hash secret) is logged and counted, never fails
        or holds the feed.
        """
        feed_id = f"{int(now_s * 1000):015d}-{uuid.uuid4().hex[:10]}"
        version = self.blend_version()
        try:
            user_hash = hash_user_id(user_id, self.config.impressions.user_id_salt)
        except Exception as exc:  # noqa: BLE001 (the log is best effort; the feed is not)
            self.impression_writer.count_error()
            logger.warning("impressions of a feed not logged (%s)", type(exc).__name__)
            return
        documents = []
        for position, (post_id, row) in enumerate(zip(shown, rows, strict=True)):
            document: dict[str, Any] = {
                "_id": f"{feed_id}-{position:04d}",
                "feed_id": feed_id,
                "user_hash": user_hash,
                "post_id": post_id,
                "served_at_s": float(now_s),
                "position": position,
                "blend_version": version,
            }
            for term in TERMS:
                array = values[term]
                document[term] = None if array is None else round(float(array[row]), 6)
            documents.append(document)
        self.impression_writer.submit(documents)

    def flush_impressions(self, timeout_s: float = 30.0) -> bool:
        """Wait until the impressions of the feeds served so far are written (or failed)."""
        return self.impression_writer.flush(timeout_s)

    def export_impressions(self, after_id: str | None, limit: int) -> ImpressionPage:
        """One page of the impression log, oldest first, for the learned-blend job (user ids
        are hashed in the log itself)."""
        if not 1 <= limit <= 100_000:
            raise ValueError(f"limit={limit} must be within 1..100000; page through instead")
        # The feeds served so far belong in the export: let the writer catch up first.
        self.flush_impressions()
        documents = self.impression_log.page_after(after_id, limit)
        rows = tuple(
            LoggedImpression(
                impression_id=str(d["_id"]),
                feed_id=str(d["feed_id"]),
                user_hash=str(d["user_hash"]),
                post_id=str(d["post_id"]),
                served_at_s=float(d["served_at_s"]),
                position=int(d["position"]),
                blend_version=str(d.get("blend_version", "hand-set")),
                **{t: None if d.get(t) is None else float(d[t]) for t in TERMS},
            )
            for d in documents
        )
        next_after = rows[-1].impression_id if len(rows) == limit else None
        return ImpressionPage(impressions=rows, next_after=next_after)

    def _terms(
        self,
        weights: ScoreWeights,
        personal: bool,
        cf_used: bool,
        no_profile: bool,
        neighbour_used: bool,
        history: int,
    ) -> FeedTerms:
        config = self.config
        neighbour_reason = None
        if not neighbour_used:
            if weights.neighbour <= 0:
                neighbour_reason = "off: weights.neighbour is 0"
            elif history == 0:
                neighbour_reason = "off: the user has no positive reactions yet (cold start)"
            else:
                neighbour_reason = (
                    "off: no candidate was liked by anyone who liked the user's recent posts"
                )
        cf_reason: str | None
        if self.collaborative is None:
            cf_reason = self._collaborative_error or (
                "off: no matrix-factorisation model loaded yet (set collaborative_model_path "
                "once the retraining job has written one)"
            )
        else:
            cf_reason = None if cf_used else "off for this user: not in the model"
        content_reason = None
        if not personal:
            content_reason = (
                "off: the user has no interactions yet (cold start)"
                if no_profile
                else "off: the user's reactions cancel out"
            )
        return FeedTerms(
            collaborative=CollaborativeTerm(
                used=cf_used,
                weight=weights.collaborative,
                model_version=self.collaborative.version if self.collaborative else None,
                reason=cf_reason,
            ),
            content=ContentTerm(used=personal, weight=weights.content, reason=content_reason),
            freshness=FreshnessTerm(
                used=True,
                weight=weights.freshness,
                half_life_s=config.freshness_half_life_s,
            ),
            popularity=ScoreTerm(used=True, weight=weights.popularity),
            diversity=DiversityTerm(used=config.mmr_lambda < 1.0, mmr_lambda=config.mmr_lambda),
            neighbour=NeighbourTerm(
                used=neighbour_used,
                weight=weights.neighbour,
                history=history,
                reason=neighbour_reason,
            ),
            blend=BlendInfo(
                source="learned" if self.blend is not None else "hand-set",
                version=self.blend_version(),
                error=self._blend_error,
            ),
        )

    # ---- similar posts ------------------------------------------------------------------
    def similar_posts(self, post_id: str, limit: int) -> SimilarPosts | None:
        """Nearest posts by vector through the index; None when the post is unknown."""
        post = self.features.get_posts([post_id]).get(post_id)
        if post is None:
            return None
        vector = self.features.get_vectors([post.text_hash] if post.text_hash else []).get(
            post.text_hash or ""
        )
        if vector is None:
            return SimilarPosts(post_id, (), "the post has no text to compare")
        neighbours = self.index.nearest(vector, limit, exclude=post_id)
        return SimilarPosts(post_id, tuple(ScoredPost(p, round(s, 6)) for p, s in neighbours), None)

    # ---- interests ----------------------------------------------------------------------
    def interests(self, user_id: str, limit: int, now_s: float | None = None) -> Interests:
        """Top topics from the tags and embedding clusters of the posts the user reacted to."""
        now = time.time() if now_s is None else now_s
        events = self.interactions.recent_for_user(user_id, self.config.interest_history)
        posts = self.features.get_posts(e["post_id"] for e in events)
        by_tag: dict[str, float] = {}
        by_post: dict[str, float] = {}
        for event in events:
            post = posts.get(event["post_id"])
            if post is None:
                continue
            age_s = max(now - float(event["timestamp_s"]), 0.0)
            weight = getattr(self.config.event_weights, event["type"]) * 0.5 ** (
                age_s / self.config.profile_half_life_s
            )
            by_post[event["post_id"]] = by_post.get(event["post_id"], 0.0) + weight
            for tag in post.tags:
                by_tag[tag] = by_tag.get(tag, 0.0) + weight
        topics = [
            InterestTopic(topic=tag, weight=round(w, 6), source="tag", cluster_id=None)
            for tag, w in weighted_topics(by_tag, limit)
        ]
        clusters = self._cluster_weights(by_post, posts)
        topics += [
            InterestTopic(topic=label, weight=round(w, 6), source="cluster", cluster_id=cid)
            for (cid, label), w in clusters[:limit]
        ]
        topics.sort(key=lambda t: -t.weight)
        return Interests(
            user_id=user_id,
            topics=tuple(topics[:limit]),
            interactions_used=len(events),
            cold_start=not events,
        )

    def _cluster_weights(
        self, by_post: dict[str, float], posts: dict[str, PostFeatures]
    ) -> list[tuple[tuple[int, str], float]]:
        clusters = self._fitted_clusters()
        if clusters is None or not by_post:
            return []
        ids = [p for p in by_post if posts[p].text_hash]
        stored = self.features.get_vectors(posts[p].text_hash or "" for p in ids)
        weights: dict[tuple[int, str], float] = {}
        for post_id in ids:
            vector = stored.get(posts[post_id].text_hash or "")
            if vector is None:
                continue
            cluster = int(np.argmax(clusters.centroids @ vector))
            key = (cluster, clusters.labels[cluster])
            weights[key] = weights.get(key, 0.0) + by_post[post_id]
        positive = {k: w for k, w in weights.items() if w > 0}
        total = sum(positive.values())
        if total <= 0:
            return []
        return sorted(((k, w / total) for k, w in positive.items()), key=lambda kw: -kw[1])

    def _fitted_clusters(self) -> _Clusters | None:
        """K-means over all post vectors, refitted when the corpus grew by a quarter."""
        posts = self.features.all_posts()
        with_text = {p: f for p, f in posts.items() if f.text_hash}
        count = len(with_text)
        if count < 4:
            return None
        if self._clusters is not None and count < 1.25 * self._clusters.fitted_on:
            return self._clusters
        from sklearn.cluster import KMeans

        stored = self.features.get_vectors(f.text_hash or "" for f in with_text.values())
        ids = [p for p, f in with_text.items() if (f.text_hash or "") in stored]
        matrix = np.stack([stored[with_text[p].text_hash or ""] for p in ids])
        k = max(2, min(self.config.interest_clusters, count // 4))
        model = KMeans(n_clusters=k, n_init=3, random_state=0).fit(matrix)
        centroids = model.cluster_centers_ / np.maximum(
            np.linalg.norm(model.cluster_centers_, axis=1, keepdims=True), 1e-12
        )
        labels = []
        for cluster in range(k):
            tags: Counter[str] = Counter()
            for post_id, assigned in zip(ids, model.labels_, strict=True):
                if assigned == cluster:
                    tags.update(with_text[post_id].tags)
            top = [tag for tag, _ in tags.most_common(2)]
            labels.append("/".join(top) if top else f"cluster-{cluster}")
        self._clusters = _Clusters(centroids.astype(np.float32), labels, count)
        return self._clusters

    # ---- trends -------------------------------------------------------------------------
    def posts_watermark(self) -> str:
        """Changes whenever a post is stored or changed (and on a restart): a result computed
        over the posts under an older watermark may miss posts that are now in the store."""
        return f"{self._boot_id}:{self._posts_version}"

    def recent_posts(self, since_s: float, limit: int) -> RecentPosts:
        """Posts created after ``since_s``, newest first, for the Trends node.

        ``truncated`` says more posts than ``limit`` were in range.
        """
        if limit < 1:
            raise ValueError(f"limit={limit} must be >= 1")
        # One more than asked: tells "exactly limit" from "limit and more" without a count.
        documents = self.posts.recent(since_s, limit + 1)
        posts = tuple(
            RecentPost(
                post_id=d["_id"],
                text=d.get("text", ""),
                text_hash=d.get("text_hash"),
                created_at_s=float(d["created_at_s"]),
                moderation_action=d.get("moderation_action"),
            )
            for d in documents[:limit]
        )
        return RecentPosts(posts=posts, truncated=len(documents) > limit)

    def fallback_snapshot(self, limit: int) -> FallbackSnapshot:
        """Freshness and popularity inputs of the newest ``limit`` posts, for the ingress.

        The ingress keeps this to rank a feed by freshness and popularity when this node
        fails. ``posts`` maps post id to ``(created_at_s, engagement, flagged)``.
        """
        if limit < 1:
            raise ValueError(f"limit={limit} must be >= 1")
        ids = [d["_id"] for d in self.posts.recent(float("-inf"), limit)]
        features = self.features.get_posts(ids)
        ids = [p for p in ids if p in features]
        engagement = self.features.get_popularity(ids)
        config = self.config
        return FallbackSnapshot(
            posts={
                p: (features[p].created_at_s, float(e), bool(features[p].flagged))
                for p, e in zip(ids, engagement, strict=True)
            },
            freshness_weight=self.weights().freshness,
            popularity_weight=self.weights().popularity,
            freshness_half_life_s=config.freshness_half_life_s,
        )

    # ---- health -------------------------------------------------------------------------
    def info(self) -> RecommenderInfo:
        """Where state lives (servers or embedded defaults) and whether it answers."""
        features = self.features.info()
        redis_ok = features["kind"] == "redis" and features["status"] == "ok"
        return RecommenderInfo(
            status="ok" if features["status"] == "ok" else "degraded",
            document_store=json_object(self.documents_info.as_dict()),
            feature_store=json_object(features),
            feed_cache={
                "kind": "redis" if redis_ok else "in-process",
                "ttl_s": self.config.cache_ttl_s,
            },
            vector_index={"kind": "hnswlib", "posts": len(self.index)},
            collaborative_model=CollaborativeModelInfo(
                loaded=self.collaborative is not None,
                version=self.collaborative.version if self.collaborative else None,
                error=self._collaborative_error,
            ),
            blend=BlendInfo(
                source="learned" if self.blend is not None else "hand-set",
                version=self.blend_version(),
                error=self._blend_error,
            ),
            impressions={
                "enabled": self.config.impressions.enabled,
                "logged": self.impression_log.count(),
                "max_impressions": self.impression_log.max_impressions,
                "dropped_oldest": self.impression_log.dropped,
                "queued": self.impression_writer.queued(),
                "dropped_unwritten": self.impression_writer.dropped_unwritten,
                "errors": self.impression_writer.errors,
            },
        )


_UNFLAGGED = PostFeatures(text_hash=None, created_at_s=0.0)


def embed_missing(
    service: RecommenderService,
    posts: Sequence[NewPost],
    embed: Callable[[list[str]], list[list[float]]],
) -> PostIngestSummary:
    """Ingest posts embedding their new texts with ``embed`` (tests, offline evaluation)."""
    missing = service.missing_vectors(posts)
    hashes = list(missing)
    vectors = embed([missing[h] for h in hashes]) if hashes else []
    return service.ingest_posts(posts, dict(zip(hashes, vectors, strict=True)))
