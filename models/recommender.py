"""What goes into the Recommender node and what it answers, as frozen dataclasses.

The ingress validates events and builds `NewPost` / `Interaction`; the Recommender answers
with the types below; the Trends node reads `RecentPosts`; the retraining job pages through
`InteractionPage`. Field names are the JSON names of the HTTP bodies, so the ingress turns an
answer into its response with ``dataclasses.asdict``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from models.answers import JsonObject, json_object

__all__ = [
    "BlendInfo",
    "CollaborativeModelInfo",
    "CollaborativeTerm",
    "ContentTerm",
    "DiversityTerm",
    "ExportedInteraction",
    "FallbackSnapshot",
    "FeedRanking",
    "FeedTerms",
    "FreshnessTerm",
    "Interaction",
    "InteractionIngestSummary",
    "InteractionPage",
    "InterestTopic",
    "Interests",
    "ImpressionPage",
    "LoggedImpression",
    "NeighbourTerm",
    "NewPost",
    "PostIngestSummary",
    "RecentPost",
    "RecentPosts",
    "RecommenderInfo",
    "ScoreTerm",
    "ScoredPost",
    "SimilarPosts",
]


# ---- events in ----------------------------------------------------------------------------
@dataclass(frozen=True)
class NewPost:
    """A post created, edited or moderated; re-sending its ``post_id`` upserts it.

    Attributes:
        post_id: The post's id.
        author_id: Who wrote it.
        text: Its text (may be empty for an image-only post).
        image_urls: Its images.
        tags: Normalised tags (no '#', lower case).
        created_at_s: Creation time, epoch seconds.
        moderation_action: ``flag_for_review`` / ``reject`` keep it out of feeds; ``approve``
            or None let it in.
    """

    post_id: str
    author_id: str
    created_at_s: float
    text: str = ""
    image_urls: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    moderation_action: str | None = None


@dataclass(frozen=True)
class Interaction:
    """One thing a user did to a post (idempotent by ``event_id``)."""

    event_id: str
    user_id: str
    post_id: str
    type: str
    timestamp_s: float


@dataclass(frozen=True)
class PostIngestSummary:
    """What a post batch changed."""

    accepted: int
    unchanged: int
    embedded: int
    reused_vectors: int


@dataclass(frozen=True)
class InteractionIngestSummary:
    """What an interaction batch changed.

    Attributes:
        accepted: New interactions stored and applied.
        duplicates: Interactions whose event id was stored before (or earlier in the batch).
        unknown_post_ids: Posts not known yet, each once.
        unknown_post_events: Accepted interactions on those posts (stored; they count for the
            hide filter but move no profile or popularity).
    """

    accepted: int
    duplicates: int
    unknown_post_ids: tuple[str, ...]
    unknown_post_events: int = 0


# ---- feed ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScoredPost:
    """One ranked or similar post and its score."""

    post_id: str
    score: float


@dataclass(frozen=True)
class ScoreTerm:
    """One weighted term of the feed score, and whether it took part (popularity: always)."""

    used: bool
    weight: float


@dataclass(frozen=True)
class CollaborativeTerm(ScoreTerm):
    """The matrix-factorisation term, its model version, and why it is off."""

    model_version: str | None
    reason: str | None


@dataclass(frozen=True)
class ContentTerm(ScoreTerm):
    """The profile-to-post similarity term, and why it is off."""

    reason: str | None


@dataclass(frozen=True)
class NeighbourTerm(ScoreTerm):
    """The item-to-item co-occurrence term, the user's window size, and why it is off."""

    history: int
    reason: str | None


@dataclass(frozen=True)
class FreshnessTerm(ScoreTerm):
    """The age term (always used) and its half-life."""

    half_life_s: float


@dataclass(frozen=True)
class DiversityTerm:
    """MMR re-ordering: used when ``mmr_lambda`` is below 1."""

    used: bool
    mmr_lambda: float


@dataclass(frozen=True)
class BlendInfo:
    """Where the term weights came from: ``learned`` (the blend job's promoted weights, with
    their version) or ``hand-set`` (the configured ``weights``; ``error`` says why a configured
    blend file was not loaded)."""

    source: str = "hand-set"
    version: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class FeedTerms:
    """Each score term of a feed: used or not (and why), its weight and settings."""

    collaborative: CollaborativeTerm
    content: ContentTerm
    freshness: FreshnessTerm
    popularity: ScoreTerm
    diversity: DiversityTerm
    neighbour: NeighbourTerm
    blend: BlendInfo = field(default_factory=BlendInfo)


@dataclass(frozen=True)
class FeedRanking:
    """A ranked feed.

    Attributes:
        posts: Ranked posts, best first, at most ``limit``.
        unknown_post_ids: Candidates the service has never seen.
        filtered_post_ids: Candidates left out (hidden, reported or moderation flagged).
        terms: How each score term took part.
        cold_start: Only popularity and freshness ranked (no profile, no model, no
            co-occurrence for this user).
        cached: The answer came from the feed cache.
        degraded: The feature store's server is unavailable (the mirror answered).
        degraded_reason: Why, when degraded.
    """

    posts: tuple[ScoredPost, ...]
    unknown_post_ids: tuple[str, ...]
    filtered_post_ids: tuple[str, ...]
    terms: FeedTerms
    cold_start: bool
    cached: bool = False
    degraded: bool = False
    degraded_reason: str | None = None


@dataclass(frozen=True)
class SimilarPosts:
    """Nearest posts by embedding, or why there are none."""

    post_id: str
    posts: tuple[ScoredPost, ...]
    reason: str | None


@dataclass(frozen=True)
class InterestTopic:
    """One topic a user engages with: a tag or an embedding cluster's label."""

    topic: str
    weight: float
    source: str
    cluster_id: int | None


@dataclass(frozen=True)
class Interests:
    """A user's top topics."""

    user_id: str
    topics: tuple[InterestTopic, ...]
    interactions_used: int
    cold_start: bool


# ---- what other nodes and jobs read -------------------------------------------------------
@dataclass(frozen=True)
class RecentPost:
    """A stored post as the Trends node reads it."""

    post_id: str
    text: str
    text_hash: str | None
    created_at_s: float
    moderation_action: str | None


@dataclass(frozen=True)
class RecentPosts:
    """Posts of a time range, newest first; ``truncated``: more were in range."""

    posts: tuple[RecentPost, ...]
    truncated: bool


@dataclass(frozen=True)
class FallbackSnapshot:
    """What the ingress ranks a feed with when the Recommender fails.

    Attributes:
        posts: Post id -> (created_at_s, engagement, flagged) of the newest posts.
        freshness_weight: The configured freshness weight.
        popularity_weight: The configured popularity weight.
        freshness_half_life_s: The configured freshness half-life.
    """

    posts: dict[str, tuple[float, float, bool]]
    freshness_weight: float
    popularity_weight: float
    freshness_half_life_s: float


@dataclass(frozen=True)
class ExportedInteraction:
    """One interaction for the retraining job, the user id hashed (no raw id leaves)."""

    event_id: str
    user_hash: str
    post_id: str
    type: str
    timestamp_s: float


@dataclass(frozen=True)
class InteractionPage:
    """One page of interactions; ``next_after`` is the cursor, None after the last page."""

    interactions: tuple[ExportedInteraction, ...]
    next_after: str | None


@dataclass(frozen=True)
class LoggedImpression:
    """One post a served feed showed, for the learned-blend job: the user id hashed, no text.

    Each term is its value for this post in that feed, None when the term was off.
    """

    impression_id: str
    feed_id: str
    user_hash: str
    post_id: str
    served_at_s: float
    position: int
    blend_version: str
    content: float | None
    freshness: float | None
    popularity: float | None
    collaborative: float | None
    neighbour: float | None


@dataclass(frozen=True)
class ImpressionPage:
    """One page of the impression log; ``next_after`` is the cursor, None after the last."""

    impressions: tuple[LoggedImpression, ...]
    next_after: str | None


# ---- health -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CollaborativeModelInfo:
    """The matrix-factorisation model: loaded, its version, or why it failed."""

    loaded: bool
    version: str | None
    error: str | None


@dataclass(frozen=True)
class RecommenderInfo:
    """Where the Recommender's state lives and whether it answers (for /health).

    The stores' parts are their own status documents: the document store, the feature
    store, the feed cache (kind, ttl_s) and the vector index (kind, posts).
    """

    status: str
    document_store: JsonObject
    feature_store: JsonObject
    feed_cache: JsonObject
    vector_index: JsonObject
    collaborative_model: CollaborativeModelInfo
    blend: BlendInfo = field(default_factory=BlendInfo)
    impressions: JsonObject = field(default_factory=dict)

    def as_json(self) -> JsonObject:
        """The node's part of /health as plain JSON types."""
        return json_object(asdict(self))
