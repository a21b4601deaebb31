"""What the Trends node does between the post store and `models.trends`, as pure functions.

* `LabelCache`: the sentiment label of each post, measured once by the sentiment node and kept
  by post id together with the hash of the text it was measured on (an edited post is measured
  again).
* `trend_posts`: the Recommender's `RecentPost` rows into `TrendPost` objects, leaving out
  posts that moderation flagged or rejected (a hidden post must not make a topic trend) and
  posts without text.
* `snapshot_freshness`: whether a read of the background snapshot recomputes it (posts
  arrived since it was computed), or answers it as it is, stale or not.
* `resolve_topic`: a topic in a URL is a trend id of a known report (-> its keywords) or a
  keyword or phrase.

Nothing here logs or stores more than ids, hashes and labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from models.recommender import RecentPost
from models.trends import SENTIMENT_LABELS, TrendPost, TrendReport

__all__ = [
    "HIDDEN_ACTIONS",
    "LabelCache",
    "ResolvedTopic",
    "SnapshotFreshness",
    "resolve_topic",
    "snapshot_freshness",
    "trend_posts",
]

# Moderation actions that keep a post out of trends (same set the recommender filters).
HIDDEN_ACTIONS = frozenset({"flag_for_review", "reject"})
# Trend ids are the 12-hex-digit prefix `models.trends` builds from keywords.
_TREND_ID = re.compile(r"^[0-9a-f]{12}$")


class LabelCache:
    """Sentiment labels by post id, valid for the text hash they were measured on."""

    def __init__(self) -> None:
        """Start empty; labels arrive through `put`."""
        self._labels: dict[str, tuple[str | None, str]] = {}

    def __len__(self) -> int:
        """Number of labelled posts held."""
        return len(self._labels)

    def label(self, post_id: str, text_hash: str | None) -> str | None:
        """The label measured on this text of the post, or None."""
        entry = self._labels.get(post_id)
        if entry is None or entry[0] != text_hash:
            return None
        return entry[1]

    def unlabelled(self, rows: Iterable[RecentPost]) -> list[RecentPost]:
        """Rows with text whose current text has no label yet (in input order)."""
        return [
            row
            for row in rows
            if row.text.strip() and self.label(row.post_id, row.text_hash) is None
        ]

    def put(self, rows: Sequence[RecentPost], labels: Sequence[str]) -> int:
        """Store one label per row; labels outside positive/negative/neutral are skipped.

        Returns:
            How many labels were stored.

        Raises:
            ValueError: `rows` and `labels` differ in length.
        """
        if len(rows) != len(labels):
            raise ValueError(
                f"got {len(labels)} labels for {len(rows)} posts; the sentiment node must "
                "answer once per text"
            )
        stored = 0
        for row, label in zip(rows, labels, strict=True):
            normalised = str(label).strip().lower()
            if normalised not in SENTIMENT_LABELS:
                continue
            self._labels[row.post_id] = (row.text_hash, normalised)
            stored += 1
        return stored

    def prune(self, keep_post_ids: Iterable[str], max_entries: int) -> int:
        """Drop labels of posts outside `keep_post_ids` once more than `max_entries` are held.

        Posts that left every window are never asked for again; the bound keeps memory flat.

        Returns:
            How many labels were dropped.
        """
        if len(self._labels) <= max_entries:
            return 0
        keep = set(keep_post_ids)
        before = len(self._labels)
        self._labels = {k: v for k, v in self._labels.items() if k in keep}
        return before - len(self._labels)


def trend_posts(rows: Iterable[RecentPost], labels: LabelCache) -> list[TrendPost]:
    """`TrendPost` objects for the store rows that may trend, with their cached labels.

    Posts that moderation flagged or rejected, and posts without text, are left out.
    """
    posts: list[TrendPost] = []
    for row in rows:
        if not row.text.strip() or row.moderation_action in HIDDEN_ACTIONS:
            continue
        posts.append(
            TrendPost(
                post_id=row.post_id,
                text=row.text,
                created_at=datetime.fromtimestamp(row.created_at_s, tz=UTC),
                sentiment_label=labels.label(row.post_id, row.text_hash),
            )
        )
    return posts


@dataclass(frozen=True)
class ResolvedTopic:
    """The terms a topic stands for.

    Attributes:
        terms: Keywords matched in posts (any of them counts).
        kind: ``"trend"`` when the topic was a known trend id, else ``"keyword"``.
        trend_id: The trend id, for ``kind == "trend"``.
    """

    terms: tuple[str, ...]
    kind: str
    trend_id: str | None = None


def resolve_topic(topic: str, reports: Iterable[TrendReport]) -> ResolvedTopic:
    """A trend id found in `reports` -> its keywords.

    Anything else is a keyword or phrase (whitespace collapsed). A 12-hex-digit string that
    is no known trend is still read as a keyword: "deadbeef0042" may be a word to someone.

    Raises:
        ValueError: The topic is blank.
    """
    cleaned = " ".join(topic.split())
    if not cleaned:
        raise ValueError("topic is blank; send a keyword, a phrase or a trend id")
    if _TREND_ID.match(cleaned):
        for report in reports:
            for trend in report.trends:
                if trend.trend_id == cleaned and trend.keywords:
                    return ResolvedTopic(trend.keywords, "trend", cleaned)
    return ResolvedTopic((cleaned,), "keyword")


@dataclass(frozen=True)
class SnapshotFreshness:
    """What a read of the background snapshot does.

    Attributes:
        recompute: Compute the snapshot again before answering (posts arrived since).
        stale: The answer may miss posts now in the store, or the runs are failing.
        next_run_in_s: Seconds until the next run is due (0: now).
    """

    recompute: bool
    stale: bool
    next_run_in_s: float


def snapshot_freshness(
    dirty: bool,
    since_run_s: float,
    period_s: float,
    min_interval_s: float,
    stale_after_s: float,
) -> SnapshotFreshness:
    """Decide how to answer from a snapshot computed ``since_run_s`` ago.

    ``dirty``: posts were stored or changed after the snapshot read the store. A dirty
    snapshot is recomputed at once when it is at least ``min_interval_s`` old; a younger one
    is answered ``stale`` with the time until that bound (a stream of posts must not turn
    every read into a full run). A clean one is stale only when older than ``stale_after_s``
    (background runs failing); its next run is one ``period_s`` after the last.
    """
    since_run_s = max(since_run_s, 0.0)
    if dirty:
        if since_run_s >= min_interval_s:
            return SnapshotFreshness(recompute=True, stale=False, next_run_in_s=0.0)
        return SnapshotFreshness(
            recompute=False, stale=True, next_run_in_s=round(min_interval_s - since_run_s, 3)
        )
    return SnapshotFreshness(
        recompute=False,
        stale=since_run_s > stale_after_s,
        next_run_in_s=round(max(period_s - since_run_s, 0.0), 3),
    )
