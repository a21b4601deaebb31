"""The learned blend's math (models.blend): labels from events, the fit, NDCG, the file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.blend import (
    TERMS,
    BlendWeights,
    blend_ndcg,
    blend_order_scores,
    fit_blend,
    label_impressions,
    paired_gain_lower_bound,
    time_holdout,
    weight_vector,
)
from models.ranking import ScoreWeights, blend_scores

HAND_SET = ScoreWeights(
    content=1.0, freshness=0.3, popularity=0.2, collaborative=1.0, neighbour=0.5
)


def synthetic_log(
    n_feeds: int = 300,
    per_feed: int = 20,
    driver: str = "neighbour",
    seed: int = 0,
    start_s: float = 1_000_000.0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Impressions and events where the chance of a like follows one term (``driver``).

    Every shown post gets a view a minute after its feed; a like follows with probability
    sigmoid(8 * driver - 6). Content is off for a third of the users (cold start),
    collaborative off for everyone (no model).
    """
    rng = np.random.default_rng(seed)
    impressions: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for feed in range(n_feeds):
        user = f"u{feed % 40}"
        served = start_s + 600.0 * feed
        cold = feed % 3 == 0
        for position in range(per_feed):
            post = f"f{feed}-p{position}"
            terms = {
                "content": None if cold else float(rng.uniform(-0.2, 1.0)),
                "freshness": float(rng.uniform()),
                "popularity": float(rng.uniform()),
                "collaborative": None,
                "neighbour": float(rng.uniform()),
            }
            impressions.append(
                {
                    "feed_id": f"feed-{feed:05d}",
                    "user_hash": user,
                    "post_id": post,
                    "served_at_s": served,
                    "position": position,
                    **terms,
                }
            )
            base = {"user_hash": user, "post_id": post}
            events.append({**base, "type": "view", "timestamp_s": served + 60.0})
            value = terms[driver] or 0.0
            if rng.uniform() < 1.0 / (1.0 + math.exp(-(8.0 * value - 6.0))):
                events.append({**base, "type": "like", "timestamp_s": served + 90.0})
    return impressions, events


def test_the_learned_weight_follows_the_term_that_drives_engagement() -> None:
    impressions, events = synthetic_log(driver="neighbour")
    data = label_impressions(impressions, events, window_s=3600.0)
    assert len(data) == data.logged == 6000
    train, held_out = time_holdout(data, 0.2)
    assert train.served_at_s.max() < held_out.served_at_s.min()
    for objective in ("pairwise", "pointwise"):
        weights, stats = fit_blend(train, objective=objective)
        vector = dict(zip(TERMS, weight_vector(weights), strict=True))
        assert max(vector, key=lambda t: vector[t]) == "neighbour", (objective, vector)
        assert vector["neighbour"] > 0.6
        assert math.isclose(sum(vector.values()), 1.0, abs_tol=1e-5)
        # Never-on terms keep the floor; nothing is negative.
        assert vector["collaborative"] == pytest.approx(0.01, abs=1e-3)
        assert stats["positives"] > 0 and stats["negatives"] > 0
        learned = blend_ndcg(weights, held_out, 20)["ndcg_at_k"]
        hand = blend_ndcg(HAND_SET, held_out, 20)["ndcg_at_k"]
        assert learned > hand + 0.05, (objective, learned, hand)


def test_a_different_driver_gives_a_different_blend() -> None:
    impressions, events = synthetic_log(driver="popularity", seed=1)
    weights, _ = fit_blend(label_impressions(impressions, events, 3600.0))
    vector = dict(zip(TERMS, weight_vector(weights), strict=True))
    assert max(vector, key=lambda t: vector[t]) == "popularity"


def test_labels_come_from_views_and_reactions_of_the_same_user_and_post() -> None:
    terms = dict.fromkeys(TERMS, 0.5)
    impressions = [
        {"feed_id": "a", "user_hash": "u", "post_id": "p1", "served_at_s": 100.0, "position": 0},
        {"feed_id": "a", "user_hash": "u", "post_id": "p2", "served_at_s": 100.0, "position": 1},
        {"feed_id": "a", "user_hash": "u", "post_id": "p3", "served_at_s": 100.0, "position": 2},
        {"feed_id": "a", "user_hash": "u", "post_id": "p4", "served_at_s": 100.0, "position": 3},
        {"feed_id": "b", "user_hash": "u", "post_id": "p1", "served_at_s": 200.0, "position": 0},
    ]
    impressions = [{**row, **terms} for row in impressions]
    events = [
        {"user_hash": "u", "post_id": "p1", "type": "view", "timestamp_s": 250.0},
        {"user_hash": "u", "post_id": "p1", "type": "like", "timestamp_s": 260.0},
        {"user_hash": "u", "post_id": "p2", "type": "view", "timestamp_s": 110.0},
        {"user_hash": "v", "post_id": "p3", "type": "like", "timestamp_s": 110.0},  # another user
        {"user_hash": "u", "post_id": "p4", "type": "like", "timestamp_s": 99.0},  # before serving
        {"user_hash": "u", "post_id": "p4", "type": "view", "timestamp_s": 5000.0},  # too late
        {"user_hash": "u", "post_id": "p2", "type": "hide", "timestamp_s": 120.0},  # not a label
    ]
    data = label_impressions(impressions, events, window_s=1000.0)
    # Feed a: only p2 was seen (ignored); feed b: p1 seen and liked (the latest impression
    # before the like takes it, not feed a's). p3 and p4 were never seen: dropped.
    assert data.logged == 5 and len(data) == 2
    assert data.positive.tolist() == [False, True]
    assert data.feeds.tolist() == [0, 1]


def test_the_blended_order_is_the_served_one_with_terms_off() -> None:
    rng = np.random.default_rng(3)
    fresh, popular, neighbour = rng.uniform(size=(3, 8))
    expected = blend_scores(HAND_SET, fresh, popular, None, None, neighbour)
    terms = np.stack([np.full(8, np.nan), fresh, popular, np.full(8, np.nan), neighbour], axis=1)
    np.testing.assert_allclose(blend_order_scores(weight_vector(HAND_SET), terms), expected)


@pytest.mark.parametrize(
    ("labels", "message"),
    [("all", "needs both"), ("none", "needs both")],
)
def test_nothing_to_learn_from_is_a_clear_error(labels: str, message: str) -> None:
    impressions, events = synthetic_log(n_feeds=5)
    kind = "like" if labels == "all" else "view"
    events = [{**e, "type": kind} for e in events if e["type"] == "view"]
    data = label_impressions(impressions, events, 3600.0)
    with pytest.raises(ValueError, match=message):
        fit_blend(data)


def test_pairwise_needs_a_feed_with_both_kinds() -> None:
    impressions, events = synthetic_log(n_feeds=4, per_feed=3)
    # Feed 0 all liked, feed 1 all ignored: positives and negatives, but never in one feed.
    liked = {r["post_id"] for r in impressions if r["feed_id"] == "feed-00000"}
    events = [e for e in events if e["type"] == "view"]
    events += [{**e, "type": "like"} for e in events if e["post_id"] in liked]
    data = label_impressions(
        [r for r in impressions if r["feed_id"] in {"feed-00000", "feed-00001"}], events, 3600.0
    )
    with pytest.raises(ValueError, match="same feed"):
        fit_blend(data)


def test_blend_file_round_trips_and_bad_files_are_named(tmp_path: Path) -> None:
    weights = ScoreWeights(
        content=0.1, freshness=0.1, popularity=0.2, collaborative=0.1, neighbour=0.5
    )
    BlendWeights(weights, "recommender-blend/3", {"trained_on": {"train": 10}}).save(tmp_path / "b")
    loaded = BlendWeights.load(tmp_path / "b")
    assert loaded.weights == weights and loaded.version == "recommender-blend/3"
    assert loaded.info == {"trained_on": {"train": 10}}
    with pytest.raises(FileNotFoundError, match="blend_weights_path"):
        BlendWeights.load(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    bad.mkdir()
    for document, message in [
        ({"weights": {"content": 1.0}}, "lacks weights"),
        ({"weights": {t: -1.0 if t == "popularity" else 1.0 for t in TERMS}}, "popularity"),
        ({"weights": dict.fromkeys(TERMS, 0.0)}, "every weight is 0"),
        ({"weights": dict.fromkeys(TERMS, "x")}, "not a number"),
    ]:
        (bad / "blend.json").write_text(json.dumps(document))
        with pytest.raises(ValueError, match=message):
            BlendWeights.load(bad)


def test_the_paired_bootstrap_bound_separates_a_real_gain_from_noise() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.uniform(0.2, 0.9, size=200)
    better = np.clip(baseline + rng.normal(0.05, 0.05, size=200), 0.0, 1.0)
    noise = np.clip(baseline + rng.normal(0.0, 0.05, size=200), 0.0, 1.0)
    assert paired_gain_lower_bound(better, baseline, 0.95, 2000, seed=0) > 0.03
    assert paired_gain_lower_bound(noise, baseline, 0.95, 2000, seed=0) < 0.0
    # Seeded: the same bound twice.
    assert paired_gain_lower_bound(noise, baseline, 0.95, 500, seed=1) == (
        paired_gain_lower_bound(noise, baseline, 0.95, 500, seed=1)
    )
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_gain_lower_bound(better[:3], baseline, 0.95, 100, seed=0)
