"""The learned blend of the feed's score terms: labelled impressions, the fit, NDCG, the file.

Pure numpy / scikit-learn. The Recommender logs, for each post a feed showed, the value of each
score term (``TERMS``; NaN where the term was off for that feed) with the hashed user and the
time it was served. `label_impressions` joins those rows with the event store: an impression
was *seen* when a view (or a reaction, which implies one) of that user on that post came within
``window_s`` after it was served, and is *positive* when a like, comment or share did; each
event counts for the latest impression served before it. Unseen impressions are dropped.

`fit_blend` learns non-negative term weights. The served score is the weighted mean of the
terms in use (`models.ranking.blend_scores`); within one feed every candidate uses the same
terms, so the order within a feed depends on ``w . x`` only, and the fit looks at that order:

- ``pairwise`` (default): logistic regression without intercept on the differences
  ``x_pos - x_neg`` of (positive, seen-but-ignored) pairs of the same feed (RankNet's loss
  with a linear scorer: Burges et al., ICML 2005), sampled up to ``max_pairs_per_feed``;
- ``pointwise``: logistic regression of positive vs not on each impression's terms (off
  terms as 0 plus one "term on" indicator each, which absorb the base rates of cold and warm
  users), with an intercept.

Negative coefficients are clipped to 0 (a term whose weight would be negative is dropped by
the blend, not reversed), the weights are scaled to sum to 1 (the weighted mean does not
depend on scale) and floored at ``min_weight`` so a cold-start feed, which has only freshness
and popularity, still has something to rank by.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from models.ranking import ScoreWeights, read_version_file

__all__ = [
    "BLEND_FILENAME",
    "TERMS",
    "BlendWeights",
    "LabelledImpressions",
    "blend_ndcg",
    "blend_order_scores",
    "feed_ndcgs",
    "fit_blend",
    "label_impressions",
    "paired_gain_lower_bound",
    "time_holdout",
]

BLEND_FILENAME = "blend.json"
TERMS: tuple[str, ...] = ("content", "freshness", "popularity", "collaborative", "neighbour")
POSITIVE_TYPES = frozenset({"like", "comment", "share"})
_FORMAT = 1


@dataclass(frozen=True)
class BlendWeights:
    """Weights of the score terms and the version that names them (``blend.json`` + VERSION).

    ``blend.json`` holds ``{"format": 1, "weights": {term: weight}, ...}`` with every term of
    `TERMS` (each >= 0, at least one > 0); extra keys (how it was trained) are kept as ``info``.
    """

    weights: ScoreWeights
    version: str = "unversioned"
    info: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BlendWeights:
        """Read ``<path>/blend.json`` (and ``<path>/VERSION`` when present).

        Raises:
            FileNotFoundError: No ``blend.json`` under `path`.
            ValueError: Not JSON, a term missing, a weight negative or not a number, all zero.
        """
        directory = Path(path)
        file = directory / BLEND_FILENAME
        if not file.is_file():
            raise FileNotFoundError(
                f"no {BLEND_FILENAME} in {str(directory)!r}; point blend_weights_path at the "
                "directory the blend job printed, or leave it empty for the hand-set weights"
            )
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file} is not JSON ({exc})") from exc
        raw = document.get("weights") if isinstance(document, dict) else None
        if not isinstance(raw, dict):
            raise ValueError(f'{file} needs a "weights" object with {list(TERMS)}')
        missing = [t for t in TERMS if t not in raw]
        if missing:
            raise ValueError(f"{file} lacks weights for {missing}")
        values: dict[str, float] = {}
        for term in TERMS:
            value = raw[term]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{file}: weights.{term}={value!r} is not a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{file}: weights.{term}={value!r} must be finite and >= 0")
            values[term] = float(value)
        if sum(values.values()) <= 0:
            raise ValueError(f"{file}: every weight is 0; the blend would rank nothing")
        version = read_version_file(directory)
        info = {k: v for k, v in document.items() if k not in {"weights", "format"}}
        return cls(ScoreWeights(**values), version, info)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the format `load` reads (the blend job, tests)."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        document = {
            "format": _FORMAT,
            "weights": {t: float(getattr(self.weights, t)) for t in TERMS},
            **self.info,
        }
        (directory / BLEND_FILENAME).write_text(
            json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        (directory / "VERSION").write_text(self.version + "\n", encoding="utf-8")


def weight_vector(weights: ScoreWeights) -> np.ndarray:
    """The weights in `TERMS` order."""
    return np.array([float(getattr(weights, t)) for t in TERMS], dtype=np.float64)


# ---- labelled impressions ---------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledImpressions:
    """Seen impressions, grouped by feed, in (feed served time, feed, position) order.

    ``terms`` is (n, len(TERMS)) with NaN where a term was off; ``feeds`` numbers the feeds
    0..n_feeds-1 in time order; ``positive`` is the label.
    """

    terms: np.ndarray
    positive: np.ndarray
    feeds: np.ndarray
    served_at_s: np.ndarray
    logged: int
    seen: int

    def __len__(self) -> int:
        return int(self.terms.shape[0])

    def subset(self, rows: np.ndarray) -> LabelledImpressions:
        """The rows `rows` (feeds renumbered in order)."""
        _, feeds = np.unique(self.feeds[rows], return_inverse=True)
        return LabelledImpressions(
            self.terms[rows],
            self.positive[rows],
            feeds.astype(np.int64),
            self.served_at_s[rows],
            self.logged,
            len(rows),
        )


def _term_value(value: object) -> float:
    if value is None:
        return math.nan
    return float(value)  # type: ignore[arg-type]


def label_impressions(
    impressions: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    window_s: float,
    positive_types: Iterable[str] = POSITIVE_TYPES,
) -> LabelledImpressions:
    """Join logged impressions with events (see the module docstring).

    Impression rows need ``feed_id``, ``user_hash``, ``post_id``, ``served_at_s``,
    ``position`` and one key per term (None: off); event rows ``user_hash``, ``post_id``,
    ``type``, ``timestamp_s`` (hashed with the same salt).
    """
    positive_kinds = set(positive_types)
    by_pair: dict[tuple[str, str], list[tuple[float, int]]] = {}
    rows: list[Mapping[str, Any]] = []
    for index, row in enumerate(impressions):
        rows.append(row)
        key = (str(row["user_hash"]), str(row["post_id"]))
        by_pair.setdefault(key, []).append((float(row["served_at_s"]), index))
    for pending in by_pair.values():
        pending.sort()
    seen = np.zeros(len(rows), dtype=bool)
    positive = np.zeros(len(rows), dtype=bool)
    for event in events:
        kind = str(event["type"])
        if kind != "view" and kind not in positive_kinds:
            continue
        served = by_pair.get((str(event["user_hash"]), str(event["post_id"])))
        if not served:
            continue
        at_s = float(event["timestamp_s"])
        # The latest impression served at or before the event.
        low, high = 0, len(served)
        while low < high:
            middle = (low + high) // 2
            if served[middle][0] <= at_s:
                low = middle + 1
            else:
                high = middle
        if low == 0:
            continue
        served_s, index = served[low - 1]
        if at_s - served_s > window_s:
            continue
        seen[index] = True
        if kind in positive_kinds:
            positive[index] = True
    kept = [i for i in range(len(rows)) if seen[i]]
    feed_time: dict[str, float] = {}
    for i in kept:
        feed = str(rows[i]["feed_id"])
        feed_time[feed] = min(feed_time.get(feed, math.inf), float(rows[i]["served_at_s"]))
    feed_order = sorted(feed_time, key=lambda f: (feed_time[f], f))
    feed_index = {f: n for n, f in enumerate(feed_order)}
    kept.sort(key=lambda i: (feed_index[str(rows[i]["feed_id"])], int(rows[i]["position"])))
    terms = np.array(
        [[_term_value(rows[i].get(t)) for t in TERMS] for i in kept], dtype=np.float64
    ).reshape(len(kept), len(TERMS))
    return LabelledImpressions(
        terms,
        positive[kept],
        np.array([feed_index[str(rows[i]["feed_id"])] for i in kept], dtype=np.int64),
        np.array([float(rows[i]["served_at_s"]) for i in kept], dtype=np.float64),
        len(rows),
        len(kept),
    )


def time_holdout(
    data: LabelledImpressions, holdout_fraction: float
) -> tuple[LabelledImpressions, LabelledImpressions]:
    """Whole feeds by time: the latest ``holdout_fraction`` of feeds are held out (LATER than
    every training feed), the earlier ones train."""
    n_feeds = int(data.feeds.max()) + 1 if len(data) else 0
    n_held = max(1, int(round(n_feeds * holdout_fraction))) if n_feeds > 1 else 0
    cut = n_feeds - n_held
    train = np.flatnonzero(data.feeds < cut)
    held = np.flatnonzero(data.feeds >= cut)
    return data.subset(train), data.subset(held)


# ---- scores and NDCG ----------------------------------------------------------------------
def blend_order_scores(weights: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """The served score per row: the weighted mean of the terms that are on (not NaN), as
    `models.ranking.blend_scores` computes it."""
    on = ~np.isnan(terms)
    total = (np.where(on, terms, 0.0) * weights).sum(axis=1)
    used = (on * weights).sum(axis=1)
    result: np.ndarray = total / np.maximum(used, 1e-12)
    return result


def feed_ndcgs(weights: ScoreWeights, data: LabelledImpressions, k: int) -> np.ndarray:
    """NDCG@k (binary: positive) of re-ranking each feed's seen impressions by the blend, one
    value per feed with at least one positive, in feed order; ties keep the logged order."""
    return _feed_ndcgs(blend_order_scores(weight_vector(weights), data.terms), data, k)


def _feed_ndcgs(scores: np.ndarray | None, data: LabelledImpressions, k: int) -> np.ndarray:
    # scores None: the logged order (position).
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values: list[float] = []
    boundaries = np.flatnonzero(np.diff(data.feeds)) + 1
    for rows in np.split(np.arange(len(data)), boundaries):
        if rows.size == 0:
            continue
        labels = data.positive[rows]
        wanted = int(labels.sum())
        if wanted == 0:
            continue
        ideal = float(discounts[: min(wanted, k)].sum())
        ranked = labels if scores is None else labels[np.argsort(-scores[rows], kind="stable")]
        top = ranked[:k]
        values.append(float(top @ discounts[: len(top)]) / ideal)
    return np.asarray(values, dtype=np.float64)


def blend_ndcg(weights: ScoreWeights, data: LabelledImpressions, k: int) -> dict[str, float]:
    """Mean NDCG@k over the feeds with at least one positive (`feed_ndcgs`).

    Also ``logged_ndcg_at_k``: the order the feed was shown in (position), for reference.
    """
    ours = feed_ndcgs(weights, data, k)
    logged = _feed_ndcgs(None, data, k)
    return {
        "ndcg_at_k": float(ours.mean()) if ours.size else math.nan,
        "logged_ndcg_at_k": float(logged.mean()) if logged.size else math.nan,
        "feeds": float(ours.size),
    }


def paired_gain_lower_bound(
    candidate: np.ndarray, baseline: np.ndarray, confidence: float, rounds: int, seed: int
) -> float:
    """One-sided lower confidence bound of the mean of ``candidate - baseline`` (paired per
    feed), by the percentile bootstrap over feeds.

    Raises:
        ValueError: The arrays differ in length or are empty.
    """
    if candidate.shape != baseline.shape or candidate.size == 0:
        raise ValueError(
            f"paired scores need two equal, non-empty arrays; got {candidate.size} and "
            f"{baseline.size} feeds"
        )
    gains = candidate - baseline
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, gains.size, size=(rounds, gains.size))
    means = gains[picks].mean(axis=1)
    return float(np.quantile(means, 1.0 - confidence))


# ---- the fit --------------------------------------------------------------------------------
Objective = Literal["pairwise", "pointwise"]


def _pairs(
    data: LabelledImpressions, max_pairs_per_feed: int, rng: np.random.Generator
) -> np.ndarray:
    filled = np.nan_to_num(data.terms, nan=0.0)
    differences: list[np.ndarray] = []
    boundaries = np.flatnonzero(np.diff(data.feeds)) + 1
    for rows in np.split(np.arange(len(data)), boundaries):
        positives = rows[data.positive[rows]]
        negatives = rows[~data.positive[rows]]
        if positives.size == 0 or negatives.size == 0:
            continue
        grid = np.array(np.meshgrid(positives, negatives)).T.reshape(-1, 2)
        if len(grid) > max_pairs_per_feed:
            grid = grid[rng.choice(len(grid), max_pairs_per_feed, replace=False)]
        differences.append(filled[grid[:, 0]] - filled[grid[:, 1]])
    if not differences:
        return np.zeros((0, len(TERMS)))
    return np.concatenate(differences)


def fit_blend(
    data: LabelledImpressions,
    objective: Objective = "pairwise",
    c: float = 1.0,
    max_pairs_per_feed: int = 100,
    min_weight: float = 0.01,
    seed: int = 0,
) -> tuple[ScoreWeights, dict[str, float]]:
    """Learn the term weights (see the module docstring); returns them and fit statistics.

    Raises:
        ValueError: Nothing to learn from: no positive or no seen-but-ignored impression, no
            feed with both (pairwise), or every learned weight <= 0.
    """
    from sklearn.linear_model import LogisticRegression

    positives = int(data.positive.sum())
    negatives = len(data) - positives
    if positives == 0 or negatives == 0:
        raise ValueError(
            f"{len(data)} seen impressions, {positives} engaged and {negatives} ignored; the fit "
            "needs both (are views sent as `view` events, and likes after them?)"
        )
    on = ~np.isnan(data.terms)
    if objective == "pairwise":
        rng = np.random.default_rng(seed)
        differences = _pairs(data, max_pairs_per_feed, rng)
        if len(differences) == 0:
            raise ValueError(
                "no feed has both an engaged and an ignored seen impression; pairwise "
                "fitting compares posts of the same feed"
            )
        features = np.concatenate([differences, -differences])
        labels = np.concatenate([np.ones(len(differences)), np.zeros(len(differences))])
        model = LogisticRegression(C=c, fit_intercept=False, max_iter=1000)
        model.fit(features, labels)
        coefficients = model.coef_[0]
        rows = float(len(differences))
    else:
        features = np.concatenate([np.nan_to_num(data.terms, nan=0.0), on.astype(float)], axis=1)
        model = LogisticRegression(C=c, max_iter=1000, class_weight="balanced")
        model.fit(features, data.positive.astype(int))
        coefficients = model.coef_[0][: len(TERMS)]
        rows = float(len(data))
    raw = np.asarray(coefficients, dtype=np.float64)
    # A term that was never on carries no evidence: it keeps the floor, not a fitted zero.
    raw = np.where(on.any(axis=0), raw, 0.0)
    clipped = np.clip(raw, 0.0, None)
    if clipped.sum() <= 0:
        raise ValueError(
            "every learned term weight is <= 0 (coefficients "
            f"{dict(zip(TERMS, np.round(raw, 4).tolist(), strict=True))}); no term ranks "
            "engaged posts above ignored ones in these logs"
        )
    weights = np.maximum(clipped / clipped.sum(), min_weight)
    weights = weights / weights.sum()
    stats = {
        "fit_rows": rows,
        "positives": float(positives),
        "negatives": float(negatives),
        **{f"coef_{t}": float(v) for t, v in zip(TERMS, raw, strict=True)},
    }
    learned = ScoreWeights(**{t: round(float(w), 6) for t, w in zip(TERMS, weights, strict=True)})
    return learned, stats
