"""Feed ranking math: user profiles, score terms, diversity, collaborative factors, interests.

Pure numpy / scikit-learn: the storage adapters (``storage/``) feed arrays in and the serving
layer turns the results into HTTP answers. Every function here is deterministic given its
inputs (the clock is an argument), so the offline evaluation replays history exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models import privacy

__all__ = [
    "CoOccurrence",
    "CollaborativeModel",
    "Profile",
    "ScoreWeights",
    "blend_scores",
    "cosine_to_profile",
    "freshness",
    "hash_user_id",
    "mmr_order",
    "popularity_score",
    "read_version_file",
    "update_profile",
    "weighted_topics",
]

_EPS = 1e-12


@dataclass
class Profile:
    """A user's taste: a recency-weighted sum of the vectors of posts they reacted to.

    ``vector`` is the decayed, signed sum of post vectors as of ``t_ref_s``; ``weight`` is the
    decayed sum of absolute weights, so ``vector / weight`` is the recency-weighted mean. Only
    the direction matters for cosine scores, the weight says how much evidence there is.
    """

    vector: np.ndarray
    weight: float
    t_ref_s: float
    events: int = 0

    def mean(self) -> np.ndarray:
        """The recency-weighted mean vector (zeros when there is no evidence)."""
        if self.weight <= _EPS:
            return np.zeros_like(self.vector)
        result: np.ndarray = self.vector / self.weight
        return result

    def is_informative(self) -> bool:
        """True when the profile points somewhere (a hide cancelling a like does not)."""
        return bool(self.events > 0 and float(np.linalg.norm(self.vector)) > 1e-6)


def _decay(delta_s: float, half_life_s: float) -> float:
    return float(0.5 ** (max(delta_s, 0.0) / half_life_s))


def update_profile(
    profile: Profile | None,
    post_vector: np.ndarray,
    weight: float,
    at_s: float,
    half_life_s: float,
) -> Profile:
    """Add one reaction (``weight`` < 0 for hide / report) to a profile, online.

    Older evidence loses half its weight every ``half_life_s``. Events may arrive out of order:
    a late event is added already decayed to the profile's reference time.
    """
    vector = np.asarray(post_vector, dtype=np.float32)
    if profile is None:
        profile = Profile(np.zeros_like(vector), 0.0, at_s, 0)
    if at_s >= profile.t_ref_s:
        factor = _decay(at_s - profile.t_ref_s, half_life_s)
        summed = profile.vector * factor + weight * vector
        total = profile.weight * factor + abs(weight)
        t_ref = at_s
    else:
        late = _decay(profile.t_ref_s - at_s, half_life_s)
        summed = profile.vector + weight * late * vector
        total = profile.weight + abs(weight) * late
        t_ref = profile.t_ref_s
    return Profile(summed.astype(np.float32), float(total), t_ref, profile.events + 1)


def cosine_to_profile(profile_vector: np.ndarray, post_vectors: np.ndarray) -> np.ndarray:
    """Cosine of the profile with each row of ``post_vectors`` (rows are unit vectors)."""
    norm = float(np.linalg.norm(profile_vector))
    if norm <= _EPS or post_vectors.size == 0:
        return np.zeros(post_vectors.shape[0], dtype=np.float32)
    result: np.ndarray = post_vectors @ (profile_vector / norm).astype(np.float32)
    return result


def freshness(created_at_s: np.ndarray, now_s: float, half_life_s: float) -> np.ndarray:
    """``0.5 ** (age / half_life)``: 1 for a post created now, 0.5 one half-life later.

    Posts stamped slightly in the future (clock skew) count as brand new, not fresher.
    """
    age_s = np.maximum(now_s - np.asarray(created_at_s, dtype=np.float64), 0.0)
    result: np.ndarray = np.power(0.5, age_s / half_life_s)
    return result


def popularity_score(engagement: np.ndarray) -> np.ndarray:
    """Engagement squashed to [0, 1) as ``1 - 1 / (1 + log1p(x))``, so no post dominates."""
    logged = np.log1p(np.maximum(np.asarray(engagement, dtype=np.float64), 0.0))
    result: np.ndarray = 1.0 - 1.0 / (1.0 + logged)
    return result


def fallback_order(
    candidates: list[str],
    snapshot: dict[str, tuple[float, float, bool]],
    now_s: float,
    half_life_s: float,
    freshness_weight: float,
    popularity_weight: float,
    limit: int,
    hidden: Collection[str] = (),
) -> list[tuple[str, float]]:
    """Rank by freshness and popularity alone, from a snapshot ``{post_id: (created_at_s,
    engagement, flagged)}``: the feed when the recommender itself cannot answer.

    Only posts the snapshot knows to be unflagged come back: a candidate it does not know has
    an unknown flag status and is left out, as are flagged posts and the user's ``hidden``
    ones (hidden or reported).
    """
    unique = list(dict.fromkeys(candidates))
    known = [p for p in unique if p in snapshot and not snapshot[p][2] and p not in hidden]
    if not known:
        return []
    fresh = freshness(np.array([snapshot[p][0] for p in known]), now_s, half_life_s)
    popular = popularity_score(np.array([snapshot[p][1] for p in known]))
    total_weight = freshness_weight + popularity_weight
    scores = (freshness_weight * fresh + popularity_weight * popular) / (total_weight or 1.0)
    order = sorted(range(len(known)), key=lambda i: (-scores[i], i))
    return [(known[i], round(float(scores[i]), 6)) for i in order][:limit]


@dataclass(frozen=True)
class ScoreWeights:
    """How much each term counts in the blended score."""

    content: float
    freshness: float
    popularity: float
    collaborative: float
    neighbour: float = 0.0


def blend_scores(
    weights: ScoreWeights,
    freshness_terms: np.ndarray,
    popularity_terms: np.ndarray,
    content_terms: np.ndarray | None,
    collaborative_terms: np.ndarray | None,
    neighbour_terms: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted sum of the terms in use, divided by the weights in use.

    A term that is off (``None``: no profile, no trained model, no co-occurrence yet) drops
    out of both sums, so a cold-start score stays on the same scale as a personalised one.
    """
    total = weights.freshness * freshness_terms + weights.popularity * popularity_terms
    used = weights.freshness + weights.popularity
    if neighbour_terms is not None:
        total = total + weights.neighbour * neighbour_terms
        used += weights.neighbour
    if content_terms is not None:
        total = total + weights.content * content_terms
        used += weights.content
    if collaborative_terms is not None:
        total = total + weights.collaborative * collaborative_terms
        used += weights.collaborative
    result: np.ndarray = total / max(used, _EPS)
    return result


def mmr_order(
    relevance: np.ndarray, vectors: np.ndarray | None, limit: int, lambda_: float
) -> list[int]:
    """Maximal marginal relevance: pick ``limit`` indices trading relevance for novelty.

    Each step takes ``argmax(lambda * rel - (1 - lambda) * max_sim_to_picked)`` (Carbonell and
    Goldstein, 1998) on the blended score as is: it and the cosine similarities are both on
    a 0..1 scale. ``lambda_ = 1`` (or no vectors) is a plain sort by relevance. Rows of
    ``vectors`` with zero norm (posts without text) are similar to nothing.
    """
    count = int(relevance.shape[0])
    limit = min(limit, count)
    if limit <= 0:
        return []
    if vectors is None or lambda_ >= 1.0:
        return [int(i) for i in np.argsort(-relevance, kind="stable")[:limit]]
    rel = np.asarray(relevance, dtype=np.float64)
    max_similarity = np.full(count, -np.inf)
    available = np.ones(count, dtype=bool)
    picked: list[int] = []
    for _ in range(limit):
        penalty = np.where(np.isfinite(max_similarity), max_similarity, 0.0)
        mmr = lambda_ * rel - (1.0 - lambda_) * penalty
        mmr = np.where(available, mmr, -np.inf)
        best = int(np.argmax(mmr))
        picked.append(best)
        available[best] = False
        similarity = vectors @ vectors[best]
        max_similarity = np.maximum(max_similarity, similarity)
    return picked


def read_version_file(directory: Path) -> str:
    """The stripped ``<directory>/VERSION`` of a model a job wrote; "unversioned" without one."""
    version_file = directory / "VERSION"
    if not version_file.is_file():
        return "unversioned"
    return version_file.read_text(encoding="utf-8").strip()


@dataclass
class CollaborativeModel:
    """User and post factors of a matrix-factorisation model (trained by the retraining job).

    The file format is one ``factors.npz`` in a directory, holding ``user_ids`` (str array,
    n_users), ``post_ids`` (str array, n_posts), ``user_factors`` (float32, n_users x k) and
    ``post_factors`` (float32, n_posts x k); an optional ``VERSION`` file names the model. The
    term for a pair is ``tanh(user . post)``, or absent when either side is unknown.

    When the file also holds ``user_id_salt`` (a 0-d str array), ``user_ids`` are
    `hash_user_id` hashes: the training export never carries raw user ids, so lookups hash the
    id the feed request names before searching.
    """

    user_ids: list[str]
    post_ids: list[str]
    user_factors: np.ndarray
    post_factors: np.ndarray
    version: str = "unversioned"
    user_id_salt: str | None = None
    _user_index: dict[str, int] = field(default_factory=dict, repr=False)
    _post_index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.user_factors.shape[0] != len(self.user_ids):
            raise ValueError(
                f"user_factors has {self.user_factors.shape[0]} rows for "
                f"{len(self.user_ids)} user_ids; they must match"
            )
        if self.post_factors.shape[0] != len(self.post_ids):
            raise ValueError(
                f"post_factors has {self.post_factors.shape[0]} rows for "
                f"{len(self.post_ids)} post_ids; they must match"
            )
        if self.user_factors.shape[1] != self.post_factors.shape[1]:
            raise ValueError(
                f"user factors have {self.user_factors.shape[1]} columns and post factors "
                f"{self.post_factors.shape[1]}; both sides need the same rank"
            )
        self._user_index = {uid: i for i, uid in enumerate(self.user_ids)}
        self._post_index = {pid: i for i, pid in enumerate(self.post_ids)}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CollaborativeModel:
        """Read ``<path>/factors.npz`` (and ``<path>/VERSION`` when present).

        Raises:
            FileNotFoundError: No ``factors.npz`` under `path`.
            ValueError: Arrays missing or of inconsistent shapes.
        """
        directory = Path(path)
        file = directory / "factors.npz"
        if not file.is_file():
            raise FileNotFoundError(
                f"no factors.npz in {str(directory)!r}; point collaborative_model_path at the "
                "directory the retraining job wrote, or leave it empty to turn the term off"
            )
        with np.load(file, allow_pickle=False) as data:
            missing = {"user_ids", "post_ids", "user_factors", "post_factors"} - set(data.files)
            if missing:
                raise ValueError(f"{file} lacks arrays {sorted(missing)}")
            version = read_version_file(directory)
            salt = str(data["user_id_salt"]) if "user_id_salt" in data.files else None
            return cls(
                [str(u) for u in data["user_ids"]],
                [str(p) for p in data["post_ids"]],
                np.asarray(data["user_factors"], dtype=np.float32),
                np.asarray(data["post_factors"], dtype=np.float32),
                version,
                salt,
            )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the format `load` reads (used by the retraining job and by tests)."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "user_ids": np.array(self.user_ids),
            "post_ids": np.array(self.post_ids),
            "user_factors": self.user_factors,
            "post_factors": self.post_factors,
        }
        if self.user_id_salt is not None:
            arrays["user_id_salt"] = np.array(self.user_id_salt)
        np.savez(directory / "factors.npz", **arrays)  # type: ignore[arg-type]
        (directory / "VERSION").write_text(self.version + "\n", encoding="utf-8")

    def _key(self, user_id: str) -> str:
        return user_id if self.user_id_salt is None else hash_user_id(user_id, self.user_id_salt)

    def knows_user(self, user_id: str) -> bool:
        """Whether the model has factors for this user."""
        return self._key(user_id) in self._user_index

    def scores(self, user_id: str, post_ids: list[str]) -> np.ndarray:
        """``tanh(user . post)`` per post; 0 for posts the model has not seen."""
        result = np.zeros(len(post_ids), dtype=np.float32)
        row = self._user_index.get(self._key(user_id))
        if row is None:
            return result
        user = self.user_factors[row]
        for i, post_id in enumerate(post_ids):
            column = self._post_index.get(post_id)
            if column is not None:
                result[i] = math.tanh(float(self.post_factors[column] @ user))
        return result


class CoOccurrence:
    """Item-to-item co-occurrence, updated one interaction at a time (no training job).

    Each user keeps their last ``history_limit`` distinct posts with a positive reaction.
    When a user reacts to a post not in that history, the pair (post, h) counts once more
    for every h in it, and the post's user count goes up by one. The similarity of two posts
    is ``pairs / sqrt(users_a * users_b)``: the cosine of their (windowed) binary user
    columns, as in item-based collaborative filtering (Sarwar et al., WWW 2001; Linden et
    al., "Amazon.com recommendations: item-to-item collaborative filtering", 2003). A user's
    score for a candidate is the sum of its similarities to the posts of their history.

    The window bounds the work per event (at most ``history_limit`` pair updates) and favours
    what a user liked lately. Memory grows with the distinct pairs seen: about
    ``posts x neighbours`` entries.
    """

    def __init__(self, history_limit: int = 50) -> None:
        if history_limit < 1:
            raise ValueError(f"history_limit={history_limit} must be >= 1")
        self.history_limit = history_limit
        self.pairs: dict[str, dict[str, float]] = {}
        self.users_of: dict[str, float] = {}
        self.histories: dict[str, dict[str, None]] = {}

    def observe(self, user_id: str, post_id: str) -> list[str] | None:
        """Record a positive reaction; returns the posts whose pair with ``post_id`` counted
        once more, or None when the post is already in the user's window (nothing changed)."""
        history = self.histories.setdefault(user_id, {})
        if post_id in history:
            return None
        partners = list(history)
        for other in partners:
            self.add_pair(other, post_id, 1.0)
        self.users_of[post_id] = self.users_of.get(post_id, 0.0) + 1.0
        history[post_id] = None
        if len(history) > self.history_limit:
            del history[next(iter(history))]
        return partners

    def add_pair(self, a: str, b: str, amount: float) -> None:
        """Add ``amount`` to the pair (a, b), both ways (also used to load stored counts)."""
        if a == b:
            return
        row = self.pairs.setdefault(a, {})
        row[b] = row.get(b, 0.0) + amount
        row = self.pairs.setdefault(b, {})
        row[a] = row.get(a, 0.0) + amount

    def history(self, user_id: str) -> list[str]:
        """The user's windowed history, oldest first."""
        return list(self.histories.get(user_id, {}))

    def scores(self, user_id: str, candidates: list[str]) -> np.ndarray | None:
        """Per candidate, the summed similarity to the user's history, scaled so the best
        candidate is 1; None when the user has no history or no candidate co-occurs with it
        (the term is then off, not zero)."""
        history = self.histories.get(user_id)
        if not history:
            return None
        # Walk the history's rows and meet the candidates with a C-level key intersection:
        # the work is the pairs that exist, not history x candidates.
        result = np.zeros(len(candidates), dtype=np.float64)
        users_of = self.users_of
        index = {candidate: i for i, candidate in enumerate(candidates)}
        wanted = index.keys()
        for other in history:
            row = self.pairs.get(other)
            if not row:
                continue
            scale = 1.0 / math.sqrt(users_of[other])
            for candidate in row.keys() & wanted:
                result[index[candidate]] += row[candidate] * scale
        nonzero = result > 0
        if nonzero.any():
            counts = np.array([users_of.get(c, 1.0) for c in candidates], dtype=np.float64)
            result[nonzero] /= np.sqrt(counts[nonzero])
        best = float(result.max()) if result.size else 0.0
        if best <= _EPS:
            return None
        scaled: np.ndarray = result / best
        return scaled


def hash_user_id(user_id: str, salt: str) -> str:
    """The keyed hash of a user id (32 hex chars): how training exports name users.

    HMAC-SHA256 keyed by ``SOCIALPLAY_HASH_SECRET`` (``models.privacy``), with ``salt`` as its
    public context: without the secret, the hash of a guessed id cannot be computed.
    """
    return privacy.hash_user_id(user_id, salt)


def weighted_topics(weights_by_topic: dict[str, float], limit: int) -> list[tuple[str, float]]:
    """Top ``limit`` topics with positive weight, as shares of the total positive weight."""
    positive = {topic: w for topic, w in weights_by_topic.items() if w > 0}
    total = sum(positive.values())
    if total <= _EPS:
        return []
    ranked = sorted(positive.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [(topic, weight / total) for topic, weight in ranked]
