"""Feed ranking latency (500 candidates) and events ingested per second.

    .venv/bin/python -m bench.feed [--redis-url redis://127.0.0.1:6379/0] [--requests 300]

Runs `RecommenderService` in process (the Recommender node's code path without the HTTP hop)
on the synthetic network, twice: on the in-process store and on Redis (when it answers; keys
under a private prefix, deleted afterwards). Reported per store:
- feed p50 / p99 in ms for 500 candidates, limit 20, cache off (every call ranks) and cache on
  (repeat calls); and, interleaved request by request with the uncached call (same user, same
  candidates), the same call with the neighbour term off: its cost, isolated from the load of
  a shared machine;
- interactions ingested per second (batches of 500, profile + popularity + cache updates);
- posts ingested per second, embedding included (MiniLM on CPU) and with stored vectors.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from dataclasses import replace
from typing import Any

import numpy as np

from configs.recommender import RecommenderConfig
from deployments.nodes.recommender_state import RecommenderService, embed_missing
from models.recommender import Interaction, NewPost
from pipelines.synthetic_social import generate


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(samples_ms, 50)), 2),
        "p99_ms": round(float(np.percentile(samples_ms, 99)), 2),
    }


def run(store: str, redis_url: str, requests: int, embed: Any, network: Any) -> dict[str, Any]:
    prefix = f"sp-bench-{uuid.uuid4().hex[:8]}:"
    service = RecommenderService(
        RecommenderConfig(),
        redis_url=redis_url if store == "redis" else "",
        redis_key_prefix=prefix,
    )
    try:
        began = time.perf_counter()
        posts = [NewPost(**p) for p in network.posts]
        embed_missing(service, posts, embed)
        posts_embed_s = time.perf_counter() - began
        reposts = [replace(p, post_id="re-" + p.post_id) for p in posts]
        began = time.perf_counter()
        service.ingest_posts(reposts, {})
        posts_stored_s = time.perf_counter() - began
        events = [Interaction(**e) for e in network.interactions]
        began = time.perf_counter()
        for start in range(0, len(events), 500):
            service.ingest_interactions(events[start : start + 500])
        events_s = time.perf_counter() - began
        rng = random.Random(1)
        all_ids = [p["post_id"] for p in network.posts]
        users = sorted(network.interests)
        uncached: list[float] = []
        cached: list[float] = []
        no_neighbour: list[float] = []
        default_config = service.config
        off = default_config.model_copy(
            update={"weights": default_config.weights.model_copy(update={"neighbour": 0.0})}
        )
        for i in range(requests):
            user = users[i % len(users)]
            candidates = rng.sample(all_ids, 500)
            service.reconfigure(off)
            began = time.perf_counter()
            service.rank_feed(user, candidates, 20, use_cache=False)
            no_neighbour.append((time.perf_counter() - began) * 1000)
            service.reconfigure(default_config)
            began = time.perf_counter()
            service.rank_feed(user, candidates, 20, use_cache=False)
            uncached.append((time.perf_counter() - began) * 1000)
            service.rank_feed(user, candidates, 20)
            began = time.perf_counter()
            service.rank_feed(user, candidates, 20)
            cached.append((time.perf_counter() - began) * 1000)
        return {
            "store": store,
            "feed_500_candidates_uncached": _percentiles(uncached),
            "feed_500_candidates_cached": _percentiles(cached),
            "feed_500_candidates_uncached_neighbour_off": _percentiles(no_neighbour),
            "interactions_per_s": round(len(events) / events_s),
            "posts_per_s_with_embedding": round(len(network.posts) / posts_embed_s),
            "posts_per_s_vectors_stored": round(len(reposts) / posts_stored_s),
        }
    finally:
        service.features.clear()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--posts", type=int, default=3000)
    args = parser.parse_args(argv)

    from models.embeddings import MiniLMEmbedder

    network = generate(n_users=args.users, n_posts=args.posts, days=14, seed=0)
    embedder = MiniLMEmbedder.load(device="cpu")
    results = [run("in-process", "", args.requests, embedder.predict_batch, network)]
    import redis

    try:
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=1).ping()
        results.append(run("redis", args.redis_url, args.requests, embedder.predict_batch, network))
    except redis.RedisError as exc:
        print(f"# redis skipped: {type(exc).__name__}")
    print(
        json.dumps(
            {
                "posts": len(network.posts),
                "interactions": len(network.interactions),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
