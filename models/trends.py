"""Trending topics and topic sentiment over a window of recent posts.

`TrendDetector.detect` compares the posts of the window ``(now - window, now]`` with the
previous window of the same length, ``(now - 2 * window, now - window]``. Posts older than
that, or later than ``now`` (clock skew), are ignored.

Why not DBSCAN, as the design document sketches it
    DBSCAN with cosine distance needs the neighbourhood of every post; with sparse TF-IDF
    vectors that is a brute-force n x n similarity (100,000 posts -> 10^10 pairs, tens of GB
    and minutes), and its ``eps`` must be re-tuned whenever post length changes. Clustering
    the whole window with k-means instead has the opposite problem: k must exceed the
    number of topics, or a small rising topic is swallowed by big steady ones (measured:
    400 steady topics + a 0.3 % surge, k = 256 -> the surge was never found). So:

    1. TF-IDF (scikit-learn, English stop words, sublinear tf, L2-normalised rows) with one
       vocabulary and IDF fitted on both windows, so a topic gets the same vector in each.
    2. Bursty terms: document frequency in the current window >= ``min_cluster_posts`` and
       smoothed growth ``(df_now + 1) / (df_before + 1) >= min_growth``. Only posts with a
       bursty term are clustered. A trend's own terms must grow as much as the trend, so
       this loses nothing but the cost of clustering steady topics (bursty-keyword event
       detection, as in Mathioudakis & Koudas, "TwitterMonitor", SIGMOD 2010). Limitation:
       a topic built only from words that are common elsewhere is not seen.
    3. MiniBatchKMeans over-clusters those posts (k <= ``kmeans_clusters``). On unit
       vectors ``|a - b|^2 = 2 - 2 cos(a, b)``, so k-means works in cosine geometry; cost
       is linear in posts.
    4. The k centroids are merged by average-linkage agglomerative clustering with cosine
       distance (``merge_similarity``), so a topic that k-means split by incidental words
       becomes one topic again. It runs on <= k points, so it is free.
    5. EVERY post of both windows is assigned to its most similar topic centroid when the
       cosine similarity reaches ``min_assign_similarity``; the rest are noise (the role of
       DBSCAN's noise label). Growth therefore compares the same topic definition in both
       windows, and a bursty word inside a big steady topic does not make it trend: the
       steady posts are counted in both windows.

Ranking
    ``growth = (post_count + 1) / (previous_count + 1)`` (add-one smoothing, so a topic
    with no posts last window does not divide by zero and 3 vs 0 posts is not "infinite").
    A trend needs ``post_count >= min_cluster_posts`` and ``growth >= min_growth``; a topic
    that is merely always big has growth ~1 and is dropped. The score is
    ``post_count * ln(growth)``: posts above the previous level, weighted by how fast the
    topic rises, so 300 posts up from 10 outranks 1,600 up from 1,000. Growth is not
    normalised by the change in total volume: after a cold start (empty previous window)
    every topic with enough posts grows, and the biggest rank first.

Nothing here logs post text; errors name post ids, never their content.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.cluster import AgglomerativeClustering, MiniBatchKMeans
from sklearn.feature_extraction.text import TfidfVectorizer

from models.answers import JsonObject, flattened, json_object

__all__ = [
    "SENTIMENT_LABELS",
    "TopicSentiment",
    "TopicSentimentAnswer",
    "TrendConfig",
    "TrendDetector",
    "TrendPost",
    "TrendReport",
    "TrendResult",
    "TrendRun",
    "TrendRunSummary",
    "TrendsAnswer",
    "TrendsNodeInfo",
    "topic_pattern",
    "topic_sentiment",
]

# Same label set as models.sentiment (not imported, so this module does not pull in torch).
SENTIMENT_LABELS = ("positive", "negative", "neutral")
# Length of the hex prefix used as a trend id: short for URLs, collisions negligible.
_TREND_ID_HEX_CHARS = 12


@dataclass(frozen=True)
class TrendPost:
    """One post as the trend detector sees it.

    Attributes:
        post_id: Caller's id, echoed in ``sample_post_ids``.
        text: The post's text (used for TF-IDF only; never logged).
        created_at: Timezone-aware creation time (UTC recommended).
        sentiment_label: ``"positive"``, ``"negative"``, ``"neutral"`` (any case) or None
            when the post was not scored. Other labels count as unlabelled.
    """

    post_id: str
    text: str
    created_at: datetime
    sentiment_label: str | None = None


@dataclass(frozen=True)
class TrendConfig:
    """Tuning of `TrendDetector`; the defaults suit short social posts.

    Attributes:
        max_features: TF-IDF vocabulary cap (most frequent terms in the window).
        min_df: A term must occur in at least this many posts of the window (drops typos);
            must not exceed ``min_cluster_posts``.
        min_cluster_posts: Fewest posts in the current window for a topic to be a trend.
        min_growth: Smallest smoothed growth ``(cur + 1) / (prev + 1)`` for a trend; > 1.
        kmeans_clusters: Upper bound on k for MiniBatchKMeans (the clusters cap); the actual
            k is ``min(kmeans_clusters, candidate_posts // min_cluster_posts)``, where
            candidate posts are the current-window posts with a bursty term.
        merge_similarity: k-means centroids whose cosine similarity (average linkage) is at
            least this are merged into one topic.
        min_assign_similarity: A post joins a topic only if its cosine similarity to the
            topic's centroid is at least this; otherwise it is noise.
        keywords_per_trend: How many top TF-IDF terms describe a trend.
        id_keywords: How many of those (the top ones, sorted) define ``trend_id``; fewer
            than ``keywords_per_trend`` so the id survives small shifts in the tail.
        sample_posts: Post ids per trend (the posts closest to the centroid), at most 3.
        max_fit_posts: k-means is fitted on at most this many candidate posts (a uniform
            sample); every post of both windows is still assigned afterwards.
        kmeans_batch_size: MiniBatchKMeans batch size.
        kmeans_n_init: MiniBatchKMeans restarts (the best inertia wins).
        random_state: Seed, so the same posts give the same trends.
    """

    max_features: int = 20_000
    min_df: int = 2
    min_cluster_posts: int = 10
    min_growth: float = 1.5
    kmeans_clusters: int = 128
    merge_similarity: float = 0.3
    min_assign_similarity: float = 0.25
    keywords_per_trend: int = 5
    id_keywords: int = 3
    sample_posts: int = 3
    max_fit_posts: int = 100_000
    kmeans_batch_size: int = 4096
    kmeans_n_init: int = 3
    random_state: int = 0

    def __post_init__(self) -> None:
        """Reject values that would make the detector fail late or silently misbehave."""
        positive_ints = {
            "max_features": self.max_features,
            "min_df": self.min_df,
            "min_cluster_posts": self.min_cluster_posts,
            "kmeans_clusters": self.kmeans_clusters,
            "keywords_per_trend": self.keywords_per_trend,
            "id_keywords": self.id_keywords,
            "max_fit_posts": self.max_fit_posts,
            "kmeans_batch_size": self.kmeans_batch_size,
            "kmeans_n_init": self.kmeans_n_init,
        }
        for name, value in positive_ints.items():
            if value < 1:
                raise ValueError(f"TrendConfig.{name}={value} must be >= 1")
        if self.min_df > self.min_cluster_posts:
            # sklearn raises on tiny windows when min_df exceeds the post count; a window
            # with min_cluster_posts posts must be able to build a vocabulary.
            raise ValueError(
                f"TrendConfig.min_df={self.min_df} exceeds min_cluster_posts="
                f"{self.min_cluster_posts}; lower min_df or raise min_cluster_posts"
            )
        if not math.isfinite(self.min_growth) or self.min_growth <= 1.0:
            raise ValueError(
                f"TrendConfig.min_growth={self.min_growth} must be a finite number > 1 "
                "(1.0 would call every steady topic a trend); 1.5 is a sane default"
            )
        similarities = {
            "merge_similarity": self.merge_similarity,
            "min_assign_similarity": self.min_assign_similarity,
        }
        for sim_name, similarity in similarities.items():
            if not 0.0 < similarity <= 1.0:
                raise ValueError(f"TrendConfig.{sim_name}={similarity} must be in (0, 1]")
        if self.id_keywords > self.keywords_per_trend:
            raise ValueError(
                f"TrendConfig.id_keywords={self.id_keywords} exceeds keywords_per_trend="
                f"{self.keywords_per_trend}; the id is built from the reported keywords"
            )
        if not 0 <= self.sample_posts <= 3:
            raise ValueError(f"TrendConfig.sample_posts={self.sample_posts} must be 0..3")


@dataclass(frozen=True)
class TrendResult:
    """One trending topic.

    Attributes:
        trend_id: Hex id derived from the sorted top ``id_keywords`` keywords, so the same
            topic keeps its id across runs.
        keywords: Top TF-IDF terms of the topic, strongest first.
        post_count: Posts on the topic in the current window.
        previous_count: Posts on the topic in the previous window.
        growth: ``(post_count + 1) / (previous_count + 1)``.
        sample_post_ids: Up to 3 ids of the current-window posts closest to the topic.
        sentiment: Share (0..1) of ``positive`` / ``negative`` / ``neutral`` among the
            topic's current-window posts that carry a label; all 0.0 when none do.
        labelled_count: How many of the topic's current-window posts carry a label.
        score: ``post_count * ln(growth)``; results are sorted by it, highest first.
    """

    trend_id: str
    keywords: tuple[str, ...]
    post_count: int
    previous_count: int
    growth: float
    sample_post_ids: tuple[str, ...]
    sentiment: dict[str, float]
    labelled_count: int
    score: float

    def as_dict(self) -> dict[str, Any]:
        """Return the trend as JSON-serialisable types."""
        return {
            "trend_id": self.trend_id,
            "keywords": list(self.keywords),
            "post_count": self.post_count,
            "previous_count": self.previous_count,
            "growth": self.growth,
            "sample_post_ids": list(self.sample_post_ids),
            "sentiment": dict(self.sentiment),
            "labelled_count": self.labelled_count,
            "score": self.score,
        }


@dataclass(frozen=True)
class TrendReport:
    """The result of one `TrendDetector.detect` run.

    Attributes:
        computed_at: The ``now`` the windows were anchored at.
        window_hours: Length of each window.
        window_post_count: Posts in the current window.
        previous_window_post_count: Posts in the previous window.
        trends: Trending topics, highest score first (empty when nothing is trending).
        duration_s: Wall time the computation took.
    """

    computed_at: datetime
    window_hours: float
    window_post_count: int
    previous_window_post_count: int
    trends: tuple[TrendResult, ...]
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable types (times as ISO 8601 strings)."""
        return {
            "computed_at": self.computed_at.isoformat(),
            "window_hours": self.window_hours,
            "window_post_count": self.window_post_count,
            "previous_window_post_count": self.previous_window_post_count,
            "trends": [t.as_dict() for t in self.trends],
            "duration_s": self.duration_s,
        }


@dataclass(frozen=True)
class TopicSentiment:
    """Measured sentiment of the window's posts that mention a topic.

    Attributes:
        topic: The topic terms that were matched (any of them counts).
        window_hours: Length of the window ``(now - window_hours, now]``.
        total: Posts in the window that mention the topic.
        labelled: Of those, posts with a positive / negative / neutral label.
        counts: Posts per label.
        percentages: ``100 * counts[label] / labelled`` (all 0.0 when nothing is labelled).
        aspect_labelled: Of the labelled posts, those labelled for the topic itself (the
            aspect-sentiment model's label of the topic's words in the post) rather than by
            the whole post's label.
    """

    topic: tuple[str, ...]
    window_hours: float
    total: int
    labelled: int
    counts: dict[str, int] = field(default_factory=dict)
    percentages: dict[str, float] = field(default_factory=dict)
    aspect_labelled: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the aggregate as JSON-serialisable types."""
        return {
            "topic": list(self.topic),
            "window_hours": self.window_hours,
            "total": self.total,
            "labelled": self.labelled,
            "counts": dict(self.counts),
            "percentages": dict(self.percentages),
            "aspect_labelled": self.aspect_labelled,
        }


@dataclass(frozen=True)
class TrendRun:
    """One run of the Trends node: read both windows, label new posts, detect.

    Attributes:
        report: What the detector found.
        truncated: The store had more posts than the run may read (newest kept).
        run_s: Seconds the whole run took (read, label, detect); ``report.duration_s`` is
            the detection alone.
        newly_labelled: Posts the sentiment node labelled for this run.
        unlabelled_posts: Posts of both windows still without a label.
    """

    report: TrendReport
    truncated: bool
    run_s: float
    newly_labelled: int
    unlabelled_posts: int

    def as_json(self) -> JsonObject:
        """The report's JSON plus the run's fields."""
        return flattened(self, "report", self.report.as_dict())


@dataclass(frozen=True)
class TrendsAnswer(TrendRun):
    """The Trends node's answer for a window: a run (its trends cut to the number asked
    for) and how fresh it is.

    Attributes:
        source: ``background`` (the loop's latest run), ``cache`` (an earlier on-demand run
            of this window) or ``on_demand`` (computed for this request).
        age_s: Seconds since the run's windows ended.
        stale: The background result is older than its staleness bound, or posts arrived
            after it read the store and it is not recomputed yet.
        period_s: Seconds between background runs.
        next_run_in_s: Seconds until the next background run is due (None for on-demand
            windows).
    """

    source: str
    age_s: float
    stale: bool
    period_s: float
    next_run_in_s: float | None = None


@dataclass(frozen=True)
class TopicSentimentAnswer:
    """Measured sentiment of a topic, with how the topic was read.

    Attributes:
        sentiment: Counts and percentages per label.
        kind: ``"trend"`` (a known trend id, its keywords matched) or ``"keyword"``.
        trend_id: The trend id, for kind ``trend``.
        computed_at: End of the window (ISO 8601, UTC).
        truncated: The window had more posts than one request may read.
    """

    sentiment: TopicSentiment
    kind: str
    trend_id: str | None
    computed_at: str
    truncated: bool

    def as_json(self) -> JsonObject:
        """One flat JSON object: the counts, then kind, trend id, time and truncation."""
        return flattened(self, "sentiment", self.sentiment.as_dict())


@dataclass(frozen=True)
class TrendRunSummary:
    """The last background run, as /health shows it."""

    computed_at: str
    duration_s: float
    run_s: float
    window_post_count: int
    trends: int
    truncated: bool


@dataclass(frozen=True)
class TrendsNodeInfo:
    """The Trends node's part of /health: loop settings, the last run, the label cache."""

    name: str
    window_hours: float
    period_s: float
    runs: int
    last_run: TrendRunSummary | None
    last_error: str | None
    labelled_posts: int

    def as_json(self) -> JsonObject:
        """The info as plain JSON types."""
        return json_object(asdict(self))


def _check_aware(value: datetime, what: str) -> None:
    """Raise if `value` is naive: comparing naive and aware times is ambiguous."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{what} is a naive datetime; pass a timezone-aware one, e.g. "
            "datetime.now(timezone.utc) or dt.replace(tzinfo=timezone.utc)"
        )


def _window_delta(window_hours: float) -> timedelta:
    """Validate `window_hours` and return it as a timedelta."""
    if isinstance(window_hours, bool) or not isinstance(window_hours, int | float):
        raise TypeError(f"window_hours={window_hours!r} must be a number of hours")
    if not math.isfinite(window_hours) or window_hours <= 0:
        raise ValueError(f"window_hours={window_hours} must be a finite number > 0")
    return timedelta(hours=float(window_hours))


def _split_windows(
    posts: Iterable[TrendPost], now: datetime, window: timedelta
) -> tuple[list[TrendPost], list[TrendPost]]:
    """Return (current window posts, previous window posts); everything else is dropped."""
    _check_aware(now, "now")
    current_start = now - window
    previous_start = current_start - window
    current: list[TrendPost] = []
    previous: list[TrendPost] = []
    for post in posts:
        created = post.created_at
        if created.tzinfo is None or created.utcoffset() is None:
            raise ValueError(
                f"post {post.post_id!r} has a naive created_at; give every post a "
                "timezone-aware UTC time"
            )
        if current_start < created <= now:
            current.append(post)
        elif previous_start < created <= current_start:
            previous.append(post)
    return current, previous


def _normalise_label(label: str | None) -> str | None:
    """Map a label to one of SENTIMENT_LABELS, or None when absent or unknown."""
    if label is None:
        return None
    lowered = label.strip().lower()
    return lowered if lowered in SENTIMENT_LABELS else None


def _sentiment_shares(labels: Iterable[str | None]) -> tuple[dict[str, float], int]:
    """Return the share of each label among labelled posts and the labelled count."""
    counts = dict.fromkeys(SENTIMENT_LABELS, 0)
    for label in labels:
        normalised = _normalise_label(label)
        if normalised is not None:
            counts[normalised] += 1
    labelled = sum(counts.values())
    if labelled == 0:
        return dict.fromkeys(SENTIMENT_LABELS, 0.0), 0
    return {k: v / labelled for k, v in counts.items()}, labelled


def _trend_id(keywords: Sequence[str]) -> str:
    """Stable id for a keyword set: order-independent, so ties in the ranking do not matter."""
    joined = "\x1f".join(sorted(keywords))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:_TREND_ID_HEX_CHARS]


FloatMatrix = npt.NDArray[np.float32]


class TrendDetector:
    """Finds topics that grow between two consecutive windows (see the module docstring)."""

    def __init__(self, config: TrendConfig | None = None) -> None:
        """Keep the configuration; the detector holds no state between `detect` calls."""
        self.config = config or TrendConfig()

    def detect(
        self,
        posts: Iterable[TrendPost],
        now: datetime,
        window_hours: float,
        limit: int = 10,
    ) -> TrendReport:
        """Return the trending topics of ``(now - window_hours, now]``.

        Args:
            posts: Posts of any age; those outside the two windows are ignored.
            now: Timezone-aware end of the current window.
            window_hours: Length of each window, > 0.
            limit: Most trends to return, >= 1.

        Returns:
            A report whose ``trends`` is empty when the window has fewer than
            ``min_cluster_posts`` posts or nothing grows enough.

        Raises:
            ValueError: `now` or a post's ``created_at`` is naive, `window_hours` <= 0 or
                `limit` < 1.
        """
        started_s = time.perf_counter()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit={limit!r} must be an integer >= 1")
        current, previous = _split_windows(posts, now, _window_delta(window_hours))
        trends = self._trends(current, previous, limit)
        return TrendReport(
            computed_at=now,
            window_hours=float(window_hours),
            window_post_count=len(current),
            previous_window_post_count=len(previous),
            trends=tuple(trends),
            duration_s=time.perf_counter() - started_s,
        )

    def _trends(
        self, current: list[TrendPost], previous: list[TrendPost], limit: int
    ) -> list[TrendResult]:
        """Cluster, count, filter and rank; the body of `detect`."""
        cfg = self.config
        if len(current) < cfg.min_cluster_posts:
            return []
        vectorizer = TfidfVectorizer(
            stop_words="english",
            sublinear_tf=True,
            max_features=cfg.max_features,
            min_df=cfg.min_df,
            dtype=np.float32,
        )
        texts = [p.text for p in current] + [p.text for p in previous]
        try:
            # One vocabulary and IDF for both windows: the same topic must get the same
            # vector whichever window its posts fall in.
            x_all = vectorizer.fit_transform(texts)
        except ValueError:
            # The only ValueError left after TrendConfig validation is sklearn's "empty
            # vocabulary": every post is stop words or one-off terms, so no topic exists.
            return []
        x_all = sp.csr_matrix(x_all)
        x_current = x_all[: len(current)]
        candidates = self._burst_candidates(x_current, x_all[len(current) :])
        if candidates.size == 0:
            return []
        centroids = self._topic_centroids(x_current[candidates])
        if centroids.shape[0] == 0:
            return []
        cur_topic, cur_sim = self._assign(x_current, centroids)
        prev_counts = np.zeros(centroids.shape[0], dtype=np.int64)
        if previous:
            prev_topic, _ = self._assign(x_all[len(current) :], centroids)
            prev_counts = np.bincount(
                prev_topic[prev_topic >= 0], minlength=centroids.shape[0]
            ).astype(np.int64)
        cur_counts = np.bincount(cur_topic[cur_topic >= 0], minlength=centroids.shape[0])
        terms = vectorizer.get_feature_names_out()

        results: dict[str, TrendResult] = {}
        for topic in range(centroids.shape[0]):
            count = int(cur_counts[topic])
            prev = int(prev_counts[topic])
            growth = (count + 1) / (prev + 1)
            if count < cfg.min_cluster_posts or growth < cfg.min_growth:
                continue
            members = np.flatnonzero(cur_topic == topic)
            keywords = self._keywords(x_current, members, terms)
            if not keywords:
                continue
            # Closest posts first: they show the topic better than arbitrary members.
            order = members[np.argsort(-cur_sim[members], kind="stable")]
            sentiment, labelled = _sentiment_shares(current[i].sentiment_label for i in members)
            result = TrendResult(
                trend_id=_trend_id(keywords[: cfg.id_keywords]),
                keywords=keywords,
                post_count=count,
                previous_count=prev,
                growth=growth,
                sample_post_ids=tuple(current[i].post_id for i in order[: cfg.sample_posts]),
                sentiment=sentiment,
                labelled_count=labelled,
                score=count * math.log(growth),
            )
            # Two pieces with the same top keywords are one topic to a reader; keep the
            # stronger so ids stay unique in a report.
            kept = results.get(result.trend_id)
            if kept is None or result.score > kept.score:
                results[result.trend_id] = result
        ranked = sorted(results.values(), key=lambda r: (-r.score, r.trend_id))
        return ranked[:limit]

    def _burst_candidates(
        self, x_current: sp.csr_matrix, x_previous: sp.csr_matrix
    ) -> npt.NDArray[np.intp]:
        """Rows of the current window that contain at least one bursty term.

        A term is bursty when it occurs in at least ``min_cluster_posts`` current posts and
        its smoothed document-frequency growth reaches ``min_growth``. A trend needs that
        growth, so its specific terms have it too; posts without any bursty term cannot
        start a trend and are not clustered (they are still counted, see `_trends`).
        """
        cfg = self.config
        df_current = x_current.getnnz(axis=0)
        df_previous = x_previous.getnnz(axis=0)
        term_growth = (df_current + 1) / (df_previous + 1)
        bursty = (df_current >= cfg.min_cluster_posts) & (term_growth >= cfg.min_growth)
        if not bursty.any():
            return np.empty(0, dtype=np.intp)
        hits = np.asarray(x_current @ bursty.astype(np.float32)).ravel()
        return np.flatnonzero(hits > 0)

    def _topic_centroids(self, x_fit: sp.csr_matrix) -> FloatMatrix:
        """Over-cluster the candidate posts with MiniBatchKMeans, merge close centroids.

        Returns unit-norm centroid rows (possibly none).
        """
        cfg = self.config
        rng = np.random.default_rng(cfg.random_state)
        n_posts = x_fit.shape[0]
        fit_rows = x_fit
        if n_posts > cfg.max_fit_posts:
            # k-means cost is linear in rows; a uniform sample keeps every topic's share.
            sample = np.sort(rng.choice(n_posts, size=cfg.max_fit_posts, replace=False))
            fit_rows = x_fit[sample]
        k = max(1, min(cfg.kmeans_clusters, fit_rows.shape[0] // cfg.min_cluster_posts))
        kmeans = MiniBatchKMeans(
            n_clusters=k,
            batch_size=cfg.kmeans_batch_size,
            n_init=cfg.kmeans_n_init,
            random_state=cfg.random_state,
        )
        labels = kmeans.fit_predict(fit_rows)
        sizes = np.bincount(labels, minlength=k)
        centres = np.asarray(kmeans.cluster_centers_, dtype=np.float32)
        keep = (sizes > 0) & (np.linalg.norm(centres, axis=1) > 0)
        centres, sizes = centres[keep], sizes[keep]
        centres = _unit_rows(centres)
        if centres.shape[0] <= 1:
            return centres
        merger = AgglomerativeClustering(
            n_clusters=None,
            metric="cosine",
            linkage="average",
            distance_threshold=1.0 - cfg.merge_similarity,
        )
        groups = merger.fit_predict(centres)
        merged = np.zeros((int(groups.max()) + 1, centres.shape[1]), dtype=np.float32)
        # Size-weighted so a merged topic's centre is where its posts are, not the mean of
        # its pieces.
        np.add.at(merged, groups, centres * sizes[:, None].astype(np.float32))
        return _unit_rows(merged)

    def _assign(
        self, x: sp.csr_matrix, centroids: FloatMatrix
    ) -> tuple[npt.NDArray[np.int64], FloatMatrix]:
        """Nearest topic per row (-1 below ``min_assign_similarity``) and its similarity."""
        # Rows of x and centroids are unit vectors, so the product is cosine similarity.
        sims = np.asarray(x @ centroids.T, dtype=np.float32)
        topic = sims.argmax(axis=1).astype(np.int64)
        best = sims[np.arange(sims.shape[0]), topic]
        topic[best < self.config.min_assign_similarity] = -1
        return topic, best

    def _keywords(
        self, x_current: sp.csr_matrix, members: npt.NDArray[np.intp], terms: Any
    ) -> tuple[str, ...]:
        """Top TF-IDF terms of the member posts (mean weight), strongest first."""
        weights = np.asarray(x_current[members].mean(axis=0)).ravel()
        top = np.argsort(-weights, kind="stable")[: self.config.keywords_per_trend]
        return tuple(str(terms[i]) for i in top if weights[i] > 0)


def _unit_rows(matrix: FloatMatrix) -> FloatMatrix:
    """L2-normalise rows (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: FloatMatrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return unit


def topic_pattern(topic: str | Sequence[str]) -> tuple[tuple[str, ...], re.Pattern[str]]:
    """Validate the topic terms and compile one case-insensitive whole-word regex."""
    terms = (topic,) if isinstance(topic, str) else tuple(topic)
    cleaned = tuple(" ".join(t.split()) for t in terms if isinstance(t, str))
    if len(cleaned) != len(terms) or not cleaned or any(not t for t in cleaned):
        raise ValueError(
            "topic must be a non-empty string or a non-empty list of non-empty strings "
            "(for a trend, pass its keywords)"
        )
    # \s+ between the words of a phrase, so "solar  eclipse" across a line break matches;
    # (?<!\w)/(?!\w) instead of \b so terms that start or end with punctuation still work.
    alternatives = "|".join(r"\s+".join(re.escape(w) for w in t.split()) for t in cleaned)
    return cleaned, re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def topic_sentiment(
    posts: Iterable[TrendPost],
    topic: str | Sequence[str],
    now: datetime,
    window_hours: float,
    topic_labels: Mapping[str, str] | None = None,
) -> TopicSentiment:
    """Count sentiment labels of the window's posts that mention `topic`.

    Args:
        posts: Posts of any age; only ``(now - window_hours, now]`` is counted.
        topic: A keyword or phrase, or several (a trend's keywords): a post matches when
            any of them occurs as a whole word, case-insensitively.
        now: Timezone-aware end of the window.
        window_hours: Window length, > 0.
        topic_labels: Post id -> the post's label FOR THE TOPIC (aspect sentiment: "the food
            was great but the service was awful" is positive for food, negative for
            service); it wins over the post's own label. Posts without one count by theirs.

    Returns:
        Totals, per-label counts and per-label percentages (of the labelled posts).

    Raises:
        ValueError: Empty topic, naive datetimes, or `window_hours` <= 0.
    """
    terms, pattern = topic_pattern(topic)
    current, _ = _split_windows(posts, now, _window_delta(window_hours))
    counts = dict.fromkeys(SENTIMENT_LABELS, 0)
    total = aspect_labelled = 0
    for post in current:
        if pattern.search(post.text) is None:
            continue
        total += 1
        label = _normalise_label((topic_labels or {}).get(post.post_id))
        if label is not None:
            aspect_labelled += 1
        else:
            label = _normalise_label(post.sentiment_label)
        if label is not None:
            counts[label] += 1
    labelled = sum(counts.values())
    percentages = {
        label: (100.0 * n / labelled if labelled else 0.0) for label, n in counts.items()
    }
    return TopicSentiment(
        topic=terms,
        window_hours=float(window_hours),
        total=total,
        labelled=labelled,
        counts=counts,
        percentages=percentages,
        aspect_labelled=aspect_labelled,
    )
