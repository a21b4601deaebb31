"""Offline evaluation of the feed ranking on the synthetic social network.

    .venv/bin/python -m bench.eval_feed [--users 300 --posts 2400 --days 14 --test-days 4]

Replays the history in time order through `RecommenderService` (embedded stores, the real
MiniLM vectors): posts are ingested when they are created, interactions when they happen.
Over the last ``--test-days``, once per ``--step-hours`` it ranks, for every user, the posts of
the last three days (the candidates a feed service would be sent) and compares the top 20 with
the posts that user likes, comments on or shares before the next step. Reported: recall@20 and
NDCG@20 (binary relevance), averaged over (user, step) pairs with at least one such post, for
our ranking, our ranking without diversity (MMR lambda 1), popularity, and random.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from configs.recommender import RecommenderConfig
from deployments.nodes.recommender_state import RecommenderService, embed_missing
from models.recommender import Interaction, NewPost
from pipelines.synthetic_social import DAY_S, SyntheticSocial, generate

POSITIVE = frozenset({"like", "comment", "share"})
K = 20
CANDIDATE_WINDOW_S = 3 * DAY_S


def recall_at_k(ranked: list[str], relevant: set[str], k: int = K) -> float:
    """Share of the relevant posts found in the top ``k``."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: list[str], relevant: set[str], k: int = K) -> float:
    """Binary-relevance NDCG: DCG of the ranking over DCG of a perfect one."""
    dcg = sum(1.0 / math.log2(i + 2) for i, p in enumerate(ranked[:k]) if p in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def evaluate(
    network: SyntheticSocial,
    embed: Callable[[list[str]], list[list[float]]],
    test_days: float = 4.0,
    step_hours: float = 12.0,
    seed: int = 0,
    config: RecommenderConfig | None = None,
) -> dict[str, Any]:
    """Replay ``network`` and score each ranker; returns metrics per ranker and counts."""
    base = config or RecommenderConfig(cache_ttl_s=0)
    services = {
        "ours": RecommenderService(base),
        "ours_no_mmr": RecommenderService(base.model_copy(update={"mmr_lambda": 1.0})),
    }
    rng = random.Random(seed)
    popularity: dict[str, float] = {}
    weights = base.event_weights
    posts, events = network.posts, network.interactions
    test_start = network.end_s - test_days * DAY_S
    step_s = step_hours * 3600.0
    # Embed every text once; both services then reuse the vectors (as the node would).
    vectors: dict[str, list[float]] = {}

    def cached_embed(texts: list[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in vectors]
        if missing:
            for text, vector in zip(missing, embed(missing), strict=True):
                vectors[text] = vector
        return [vectors[t] for t in texts]

    post_i = event_i = 0

    def advance(until_s: float) -> None:
        nonlocal post_i, event_i
        new_posts: list[dict[str, Any]] = []
        while post_i < len(posts) and posts[post_i]["created_at_s"] < until_s:
            new_posts.append(posts[post_i])
            post_i += 1
        if new_posts:
            typed_posts = [NewPost(**p) for p in new_posts]
            for service in services.values():
                embed_missing(service, typed_posts, cached_embed)
        new_events: list[dict[str, Any]] = []
        while event_i < len(events) and events[event_i]["timestamp_s"] < until_s:
            new_events.append(events[event_i])
            event_i += 1
        for start in range(0, len(new_events), 500):
            batch = [Interaction(**e) for e in new_events[start : start + 500]]
            for service in services.values():
                service.ingest_interactions(batch)
        for event in new_events:
            weight = getattr(weights, event["type"])
            if weight > 0:
                popularity[event["post_id"]] = popularity.get(event["post_id"], 0.0) + weight

    scores: dict[str, dict[str, list[float]]] = {
        name: {"recall": [], "ndcg": []} for name in [*services, "popularity", "random"]
    }
    rank_ms: list[float] = []
    advance(test_start)
    now = test_start
    while now < network.end_s:
        horizon = min(now + step_s, network.end_s)
        candidates = [
            p["post_id"] for p in posts if now - CANDIDATE_WINDOW_S <= p["created_at_s"] < now
        ]
        truth: dict[str, set[str]] = {}
        window = set(candidates)
        for event in events:
            if now <= event["timestamp_s"] < horizon and event["type"] in POSITIVE:
                if event["post_id"] in window:
                    truth.setdefault(event["user_id"], set()).add(event["post_id"])
        for user, relevant in sorted(truth.items()):
            ranked: dict[str, list[str]] = {}
            for name, service in services.items():
                began = time.perf_counter()
                answer = service.rank_feed(user, candidates, K, now_s=now, use_cache=False)
                rank_ms.append((time.perf_counter() - began) * 1000)
                ranked[name] = [item.post_id for item in answer.posts]
            ranked["popularity"] = sorted(candidates, key=lambda p: -popularity.get(p, 0.0))
            shuffled = list(candidates)
            rng.shuffle(shuffled)
            ranked["random"] = shuffled
            for name, order in ranked.items():
                scores[name]["recall"].append(recall_at_k(order, relevant))
                scores[name]["ndcg"].append(ndcg_at_k(order, relevant))
        advance(horizon)
        now = horizon
    pairs = len(scores["random"]["recall"])
    return {
        "metrics": {
            name: {
                "recall@20": round(float(np.mean(v["recall"])), 4) if pairs else 0.0,
                "ndcg@20": round(float(np.mean(v["ndcg"])), 4) if pairs else 0.0,
            }
            for name, v in scores.items()
        },
        "evaluated_user_steps": pairs,
        "posts": len(posts),
        "interactions": len(events),
        "rank_ms_p50": round(float(np.percentile(rank_ms, 50)), 2) if rank_ms else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--posts", type=int, default=2400)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--test-days", type=float, default=4.0)
    parser.add_argument("--step-hours", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from models.embeddings import MiniLMEmbedder

    began = time.perf_counter()
    network = generate(n_users=args.users, n_posts=args.posts, days=args.days, seed=args.seed)
    embedder = MiniLMEmbedder.load(device="cpu")
    result = evaluate(network, embedder.predict_batch, args.test_days, args.step_hours, args.seed)
    result["args"] = vars(args)
    result["wall_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
