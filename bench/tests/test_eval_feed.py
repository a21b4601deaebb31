"""The offline evaluation: metrics, the synthetic network, and ours beating the baselines."""

from __future__ import annotations

import math

import pytest

from bench.eval_feed import evaluate, ndcg_at_k, recall_at_k
from models.embeddings import MiniLMEmbedder
from pipelines.synthetic_social import TOPIC_NAMES, generate


def test_recall_and_ndcg() -> None:
    assert recall_at_k(["a", "b", "c"], {"a", "z"}, k=2) == 0.5
    assert ndcg_at_k(["a", "b"], {"a"}, k=2) == 1.0
    assert ndcg_at_k(["b", "a"], {"a"}, k=2) == pytest.approx(1 / math.log2(3))
    assert recall_at_k([], set()) == 0.0 and ndcg_at_k(["a"], set()) == 0.0


def test_generator_is_deterministic_and_time_ordered() -> None:
    first = generate(n_users=20, n_posts=80, days=3, seed=5)
    again = generate(n_users=20, n_posts=80, days=3, seed=5)
    assert first.interactions == again.interactions and first.posts == again.posts
    times = [e["timestamp_s"] for e in first.interactions]
    assert times == sorted(times)
    assert {first.post_topic[p["post_id"]] for p in first.posts} <= set(TOPIC_NAMES)
    kinds = {e["type"] for e in first.interactions}
    assert {"view", "like", "hide"} <= kinds


def test_our_ranking_beats_popularity_and_random() -> None:
    network = generate(n_users=60, n_posts=500, days=8, seed=1)
    embedder = MiniLMEmbedder.load(device="cpu")
    result = evaluate(network, embedder.predict_batch, test_days=2.0, step_hours=24.0)
    metrics = result["metrics"]
    assert result["evaluated_user_steps"] > 30
    assert metrics["ours"]["recall@20"] > 1.5 * metrics["popularity"]["recall@20"]
    assert metrics["ours"]["ndcg@20"] > metrics["popularity"]["ndcg@20"]
    assert metrics["popularity"]["recall@20"] >= metrics["random"]["recall@20"] * 0.8


def test_ratings_files_in_movielens_layouts_are_read(tmp_path) -> None:
    from bench.eval_feed import read_ratings

    tab = tmp_path / "u.data"
    tab.write_text("1\t10\t5\t881250949\n1\t11\t3\t881250950\n", encoding="utf-8")
    comma = tmp_path / "ratings.csv"
    comma.write_text("userId,movieId,rating,timestamp\n1,10,5.0,881250949\n", encoding="utf-8")
    colons = tmp_path / "ratings.dat"
    colons.write_text("1::10::5::881250949\n", encoding="utf-8")
    assert [(r.user, r.item, r.rating) for r in read_ratings(tab)] == [
        ("1", "10", 5.0),
        ("1", "11", 3.0),
    ]
    assert read_ratings(comma)[0].timestamp_s == 881250949.0
    assert read_ratings(colons)[0].item == "10"
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\t10\t5\t881250949\n1\t11\tfive\t881250950\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:2: rating 'five'"):
        read_ratings(bad)


def test_the_split_holds_out_each_users_last_fifth_in_time_order() -> None:
    from bench.eval_feed import Rating, split_ratings

    rows = [Rating("u", f"i{t}", 5.0, float(t)) for t in (5, 1, 9, 3, 7, 2, 8, 4, 6, 10)]
    rows += [Rating("few", "i1", 5.0, 1.0)]
    split = split_ratings(rows)
    assert [r.item for r in split.held_out["u"]] == ["i9", "i10"]
    assert "few" not in split.held_out
    assert max(r.timestamp_s for r in split.train if r.user == "u") == 8.0


def test_on_a_ratings_file_with_taste_structure_the_collaborative_rankers_win(tmp_path) -> None:
    from bench.eval_feed import evaluate_ratings, read_ratings
    from bench.synthetic_ratings import generate_ratings, write_ratings

    rows = generate_ratings(n_users=120, n_items=300, mean_per_user=40, seed=3)
    assert (rows == generate_ratings(n_users=120, n_items=300, mean_per_user=40, seed=3)).all()
    path = tmp_path / "ratings.tsv"
    write_ratings(path, rows)
    result = evaluate_ratings(read_ratings(path), max_users=80)
    metrics = result["metrics"]
    assert result["evaluated_users"] == 80
    assert metrics["item_knn"]["ndcg@20"] > metrics["random"]["ndcg@20"]
    assert metrics["popularity"]["ndcg@20"] > metrics["random"]["ndcg@20"]
    assert metrics["ours"]["ndcg@20"] > metrics["popularity"]["ndcg@20"]


def test_the_learned_blend_runs_on_simulated_impressions(tmp_path) -> None:
    from bench.eval_feed import evaluate_ratings, read_ratings
    from bench.synthetic_ratings import generate_ratings, write_ratings

    path = tmp_path / "ratings.tsv"
    write_ratings(path, generate_ratings(n_users=120, n_items=300, mean_per_user=40, seed=3))
    result = evaluate_ratings(read_ratings(path), max_users=60, blend_dir=tmp_path / "blend")
    blend = result["blend"]
    assert blend["feeds_logged"] > 0 and 0 < blend["engaged"] < blend["impressions_seen"]
    assert abs(sum(blend["learned_weights"].values()) - 1.0) < 1e-4
    metrics = result["metrics"]
    # Both blends rank the same events: each beats random (which blend wins is measured, not
    # assumed: docs/recommender.md reports it).
    for name in ("ours_hand_set_logged", "ours_learned_blend"):
        assert metrics[name]["ndcg@20"] > metrics["random"]["ndcg@20"]
    assert (tmp_path / "blend" / "blend.json").is_file()
