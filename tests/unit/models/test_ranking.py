"""Ranking math (models/ranking.py): profiles, terms, diversity, collaborative factors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.ranking import (
    CollaborativeModel,
    ScoreWeights,
    blend_scores,
    cosine_to_profile,
    fallback_order,
    freshness,
    mmr_order,
    popularity_score,
    update_profile,
    weighted_topics,
)

A = np.array([1.0, 0.0, 0.0], dtype=np.float32)
B = np.array([0.0, 1.0, 0.0], dtype=np.float32)


def test_profile_is_a_recency_weighted_mean_with_negative_reactions() -> None:
    day = 86_400.0
    profile = update_profile(None, A, 1.0, 0.0, half_life_s=day)
    profile = update_profile(profile, B, 1.0, day, half_life_s=day)
    # A is one half-life older than B: it counts half as much.
    np.testing.assert_allclose(profile.vector, [0.5, 1.0, 0.0], atol=1e-6)
    assert profile.weight == pytest.approx(1.5)
    hidden = update_profile(profile, A, -1.0, day, half_life_s=day)
    assert hidden.vector[0] == pytest.approx(-0.5)
    assert hidden.events == 3


def test_late_event_is_added_already_decayed() -> None:
    profile = update_profile(None, A, 1.0, 100.0, half_life_s=100.0)
    late = update_profile(profile, B, 1.0, 0.0, half_life_s=100.0)
    np.testing.assert_allclose(late.vector, [1.0, 0.5, 0.0], atol=1e-6)
    assert late.t_ref_s == 100.0


def test_profile_that_cancels_out_is_not_informative() -> None:
    profile = update_profile(update_profile(None, A, 1.0, 0.0, 1e9), A, -1.0, 0.0, 1e9)
    assert not profile.is_informative()


def test_freshness_halves_each_half_life_and_caps_future_posts() -> None:
    values = freshness(np.array([1000.0, 900.0, 800.0, 1100.0]), now_s=1000.0, half_life_s=100.0)
    np.testing.assert_allclose(values, [1.0, 0.5, 0.25, 1.0])


def test_cosine_to_profile_and_popularity_bounds() -> None:
    np.testing.assert_allclose(cosine_to_profile(A * 3, np.stack([A, B])), [1.0, 0.0])
    assert cosine_to_profile(np.zeros(3), np.stack([A])).tolist() == [0.0]
    pop = popularity_score(np.array([0.0, 1.0, 1000.0]))
    assert pop[0] == 0.0 and 0 < pop[1] < pop[2] < 1.0


def test_blend_drops_terms_that_are_off() -> None:
    weights = ScoreWeights(content=1.0, freshness=1.0, popularity=0.0, collaborative=1.0)
    fresh, pop = np.array([1.0]), np.array([0.0])
    assert blend_scores(weights, fresh, pop, None, None)[0] == pytest.approx(1.0)
    assert blend_scores(weights, fresh, pop, np.array([0.0]), None)[0] == pytest.approx(0.5)


def test_mmr_trades_relevance_for_novelty() -> None:
    vectors = np.stack([A, A, B])
    relevance = np.array([0.9, 0.85, 0.6])
    assert mmr_order(relevance, vectors, 3, lambda_=1.0) == [0, 1, 2]
    # The near-duplicate of the top post loses its place to a different one.
    assert mmr_order(relevance, vectors, 3, lambda_=0.5) == [0, 2, 1]
    assert mmr_order(relevance, vectors, 0, 0.5) == []


def test_collaborative_model_round_trip_and_scores(tmp_path: Path) -> None:
    model = CollaborativeModel(
        ["u1"], ["p1", "p2"], np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [-2.0, 0.0]]), "v7"
    )
    model.save(tmp_path)
    loaded = CollaborativeModel.load(tmp_path)
    assert loaded.version == "v7" and loaded.knows_user("u1") and not loaded.knows_user("u2")
    scores = loaded.scores("u1", ["p1", "p2", "unseen"])
    assert scores[0] == pytest.approx(np.tanh(2.0), rel=1e-5) and scores[1] < 0 and scores[2] == 0


def test_collaborative_model_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="collaborative_model_path"):
        CollaborativeModel.load(tmp_path)
    with pytest.raises(ValueError, match="same rank"):
        CollaborativeModel(["u"], ["p"], np.zeros((1, 2)), np.zeros((1, 3)))


def test_weighted_topics_are_shares_of_positive_weight() -> None:
    assert weighted_topics({"cooking": 3.0, "tech": 1.0, "spam": -5.0}, 5) == [
        ("cooking", 0.75),
        ("tech", 0.25),
    ]
    assert weighted_topics({"x": -1.0}, 5) == []


def test_fallback_order_ranks_known_unflagged_posts_and_leaves_out_unknown_and_hidden() -> None:
    now_s = 1_000_000.0
    day_s = 86_400.0
    snapshot = {
        "old-quiet": (now_s - 10 * day_s, 0.0, False),
        "new-quiet": (now_s - 60.0, 0.0, False),
        "old-popular": (now_s - 10 * day_s, 500.0, False),
        "new-flagged": (now_s, 900.0, True),
        "hidden-new": (now_s, 900.0, False),
    }
    candidates = [
        "ghost-b", "old-quiet", "old-popular", "new-flagged", "hidden-new", "new-quiet",
        "ghost-a", "old-quiet",
    ]  # fmt: skip
    ranked = fallback_order(
        candidates,
        snapshot,
        now_s,
        half_life_s=day_s,
        freshness_weight=0.3,
        popularity_weight=0.2,
        limit=10,
        hidden={"hidden-new"},
    )
    order = [post_id for post_id, _ in ranked]
    # Flagged, hidden and unknown (flag status unknown) posts never come back; duplicates
    # count once.
    assert order == ["new-quiet", "old-popular", "old-quiet"]
    scores = dict(ranked)
    assert scores["new-quiet"] > scores["old-popular"] > scores["old-quiet"] > 0.0
    assert len(fallback_order(order, snapshot, now_s, day_s, 0.3, 0.2, limit=2)) == 2
    # Without the hidden set the hidden post would rank first: the set is what removed it.
    assert fallback_order(["hidden-new"], snapshot, now_s, day_s, 0.3, 0.2, limit=5)
    assert fallback_order(["ghost-a"], snapshot, now_s, day_s, 0.3, 0.2, limit=5) == []


def test_fallback_order_with_popularity_only_prefers_engagement() -> None:
    now_s = 5_000.0
    snapshot = {"a": (now_s, 1.0, False), "b": (0.0, 50.0, False)}
    ranked = fallback_order(["a", "b"], snapshot, now_s, 60.0, 0.0, 1.0, limit=5)
    assert [post_id for post_id, _ in ranked] == ["b", "a"]


def test_cooccurrence_counts_pairs_once_per_user_within_the_window() -> None:
    from models.ranking import CoOccurrence

    model = CoOccurrence(history_limit=2)
    assert model.observe("u", "a") == []
    assert model.observe("u", "b") == ["a"]
    assert model.observe("u", "b") is None  # already in the window: nothing counts twice
    assert model.observe("u", "c") == ["a", "b"]
    assert model.history("u") == ["b", "c"]  # "a" left the window
    assert model.observe("u", "d") == ["b", "c"]
    assert model.pairs["a"] == {"b": 1.0, "c": 1.0}
    assert "d" not in model.pairs["a"]
    model.observe("v", "a")
    model.observe("v", "b")
    # Cosine of binary user columns: a-b co-occur for both users who have a and b.
    assert model.pairs["a"]["b"] == 2.0
    assert model.users_of == {"a": 2.0, "b": 2.0, "c": 1.0, "d": 1.0}


def test_cooccurrence_scores_are_scaled_to_the_best_and_off_without_evidence() -> None:
    from models.ranking import CoOccurrence

    model = CoOccurrence()
    for user in ("x", "y"):
        model.observe(user, "a")
        model.observe(user, "b")
    model.observe("z", "a")
    model.observe("z", "c")
    model.observe("me", "a")
    scores = model.scores("me", ["b", "c", "nobody"])
    assert scores is not None
    assert scores[0] == pytest.approx(1.0)
    assert 0 < scores[1] < scores[0]
    assert scores[2] == 0.0
    assert model.scores("stranger", ["b"]) is None
    assert model.scores("me", ["nobody"]) is None
