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
