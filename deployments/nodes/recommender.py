"""Recommender node: owns the event store, feature store and vector index.

One replica holds the state every route reads (document repositories, the Redis-backed
feature store with its in-process mirror, the hnswlib index), so all callers see one state;
a deployment configured for more replicas refuses to start (`single_replica`);
the ingress makes one handle call per request. New post texts are embedded through the
Embedder node's handle, only when no vector is stored for them yet.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from configs.recommender import RecommenderConfig
from configs.settings import get_settings
from deployments.nodes.recommender_state import RecommenderService
from deployments.nodes.single_replica import require_one_replica
from models.answers import Answer
from models.ranking import hash_user_id
from models.recommender import (
    ExportedInteraction,
    FallbackSnapshot,
    FeedRanking,
    ImpressionPage,
    Interaction,
    InteractionIngestSummary,
    InteractionPage,
    Interests,
    NewPost,
    PostIngestSummary,
    RecentPosts,
    RecommenderInfo,
    SimilarPosts,
)

logger = logging.getLogger("ray.serve")


@serve.deployment(name="Recommender", num_replicas=1, max_ongoing_requests=64)
class Recommender:
    """Events in; feeds, similar posts and interests out."""

    def __init__(self, embedder: DeploymentHandle[Any], redis_key_prefix: str = "sp:rec:") -> None:
        require_one_replica(
            "Recommender", "the vector index, the feature mirror and the feed cache epoch"
        )
        settings = get_settings()
        self.embedder = embedder
        self.service = RecommenderService(
            RecommenderConfig(),
            redis_url=settings.redis_url,
            mongodb_url=settings.mongodb_url,
            redis_key_prefix=redis_key_prefix,
        )
        info = self.service.info()
        logger.info(
            "recommender stores: documents=%s features=%s",
            info.document_store.get("kind"),
            info.feature_store.get("kind"),
        )

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Weights, half-lives, MMR lambda, cache TTL, collaborative model and blend paths: live."""
        self.service.reconfigure(RecommenderConfig.model_validate(user_config or {}))

    async def ingest_posts(self, posts: list[NewPost]) -> PostIngestSummary:
        """Store posts; embed the texts that have no stored vector (one Embedder call)."""
        missing = await asyncio.to_thread(self.service.missing_vectors, posts)
        hashes = list(missing)
        vectors: dict[str, list[float]] = {}
        if hashes:
            outputs: list[Answer[list[float]]] = await self.embedder.predict_many.remote(
                [missing[h] for h in hashes]
            )
            vectors = {h: o.result for h, o in zip(hashes, outputs, strict=True)}
        return await asyncio.to_thread(self.service.ingest_posts, posts, vectors)

    async def ingest_interactions(self, events: list[Interaction]) -> InteractionIngestSummary:
        """Store interactions (idempotent by event id); profiles and filters update online."""
        return await asyncio.to_thread(self.service.ingest_interactions, events)

    async def rank_feed(
        self, user_id: str, candidate_post_ids: list[str], limit: int
    ) -> FeedRanking:
        """Rank candidate posts for a user."""
        return await asyncio.to_thread(self.service.rank_feed, user_id, candidate_post_ids, limit)

    async def similar_posts(self, post_id: str, limit: int) -> SimilarPosts | None:
        """Nearest posts by embedding; None for an unknown post."""
        return await asyncio.to_thread(self.service.similar_posts, post_id, limit)

    async def interests(self, user_id: str, limit: int) -> Interests:
        """The user's top topics."""
        return await asyncio.to_thread(self.service.interests, user_id, limit)

    async def recent_posts(self, since_s: float, limit: int) -> RecentPosts:
        """Posts created after ``since_s`` (epoch s), newest first, for the Trends node."""
        return await asyncio.to_thread(self.service.recent_posts, since_s, limit)

    async def posts_watermark(self) -> str:
        """Changes whenever a post is stored or changed: the Trends node's dirty check."""
        return self.service.posts_watermark()

    async def fallback_snapshot(self, limit: int) -> FallbackSnapshot:
        """Freshness and popularity of the newest posts, kept by the ingress for fallbacks."""
        return await asyncio.to_thread(self.service.fallback_snapshot, limit)

    async def export_interactions(
        self, after_event_id: str | None, limit: int, user_id_salt: str
    ) -> InteractionPage:
        """One page of interactions for the retraining job, user ids HASHED (no PII leaves).

        ``next_after`` is the cursor of the next page, None when this was the last one.
        """
        if not 1 <= limit <= 100_000:
            raise ValueError(f"limit={limit} must be within 1..100000; page through instead")
        documents = await asyncio.to_thread(
            self.service.interactions.page_after, after_event_id, limit
        )
        rows = tuple(
            ExportedInteraction(
                event_id=str(d["_id"]),
                user_hash=hash_user_id(d["user_id"], user_id_salt),
                post_id=str(d["post_id"]),
                type=str(d["type"]),
                timestamp_s=float(d["timestamp_s"]),
            )
            for d in documents
        )
        # A full page may have more behind it; a short one is the end.
        next_after = rows[-1].event_id if len(rows) == limit else None
        return InteractionPage(interactions=rows, next_after=next_after)

    async def export_impressions(self, after_id: str | None, limit: int) -> ImpressionPage:
        """One page of the impression log for the learned-blend job (user ids already hashed);
        ``next_after`` is the cursor of the next page, None when this was the last one."""
        return await asyncio.to_thread(self.service.export_impressions, after_id, limit)

    async def info(self) -> RecommenderInfo:
        """Where the state lives and whether it answers (for /health)."""
        return await asyncio.to_thread(self.service.info)

    def check_health(self) -> None:
        """A Redis outage is not a replica failure: the mirror answers; /health says so."""
