"""Event ingestion through the HTTP API of the default service, against the same work offline.

    flock /tmp/sp-ray.lock .venv/bin/python -m bench.ingest [--interactions 60000 --posts 2000]

One run, two measurements on the same synthetic network (`pipelines.synthetic_social`):

- offline: `RecommenderService` in this process (the Recommender node's code, no HTTP, no
  Ray), posts embedded by MiniLM in this process, interactions in batches of
  ``--batch`` (the encoder's and the store's offline rates: the ceiling);
- served: ``serve_config.yaml`` as shipped (``serve run`` on a private Ray instance, no
  dashboard), posts sent to ``POST /api/v1/events/posts`` in requests of ``--post-batch``,
  then interactions to ``POST /api/v1/events/interactions`` in requests of ``--batch``, from
  ``--clients`` concurrent keep-alive connections (bodies encoded before the clock starts).

Reported: posts/s and interactions/s of each, and served / offline. Every id is fresh per run,
so nothing is a duplicate. The load generator is Python on the same cores as the server: it
takes CPU from it, so the served figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.servers import REPO_ROOT, ray_serve_server, serve_config
from configs.recommender import RecommenderConfig
from deployments.nodes.recommender_state import RecommenderService, embed_missing
from models.recommender import Interaction, NewPost
from pipelines.synthetic_social import generate


def _log(message: str) -> None:
    print(f"[ingest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def workload(
    n_posts: int, n_interactions: int, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Posts and interactions of the synthetic network with ids fresh for this run, the
    interactions cycled (new event ids) up to ``n_interactions``."""
    network = generate(n_users=max(50, n_posts // 8), n_posts=n_posts, days=14, seed=seed)
    run = uuid.uuid4().hex[:8]
    posts = [{**p, "post_id": f"{run}-{p['post_id']}"} for p in network.posts]
    events: list[dict[str, Any]] = []
    base = network.interactions
    while len(events) < n_interactions:
        for event in base[: n_interactions - len(events)]:
            events.append(
                {
                    **event,
                    "event_id": f"{run}-{len(events)}",
                    "post_id": f"{run}-{event['post_id']}",
                }
            )
    return posts, events


def offline(
    posts: list[dict[str, Any]], events: list[dict[str, Any]], batch: int
) -> dict[str, float]:
    """Posts/s (MiniLM embedding included) and interactions/s of the node's code in process."""
    from models.embeddings import MiniLMEmbedder

    embedder = MiniLMEmbedder.load(device="cpu")
    # Warm-up, as the served run's first request: the first calls pay one-off start costs.
    embedder.predict_batch([f"warm-up text {i}" for i in range(64)])
    service = RecommenderService(RecommenderConfig())
    typed_posts = [NewPost(**p) for p in posts]
    began = time.perf_counter()
    for start in range(0, len(typed_posts), 100):
        embed_missing(service, typed_posts[start : start + 100], embedder.predict_batch)
    posts_s = time.perf_counter() - began
    typed = [Interaction(**e) for e in events]
    began = time.perf_counter()
    for start in range(0, len(typed), batch):
        service.ingest_interactions(typed[start : start + batch])
    events_s = time.perf_counter() - began
    return {
        "posts_per_s": round(len(posts) / posts_s, 1),
        "interactions_per_s": round(len(events) / events_s),
    }


def _post_body(chunk: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "posts": [
                {
                    "post_id": p["post_id"],
                    "author_id": p["author_id"],
                    "text": p["text"],
                    "tags": list(p.get("tags", ())),
                    "created_at": _iso(p["created_at_s"]),
                }
                for p in chunk
            ]
        }
    ).encode("utf-8")


def _interaction_body(chunk: list[dict[str, Any]]) -> bytes:
    return json.dumps(
        {
            "interactions": [
                {
                    "event_id": e["event_id"],
                    "user_id": e["user_id"],
                    "post_id": e["post_id"],
                    "type": e["type"],
                    "timestamp": _iso(e["timestamp_s"]),
                }
                for e in chunk
            ]
        }
    ).encode("utf-8")


async def _send_all(url: str, api_key: str, bodies: list[bytes], clients: int) -> float:
    """POST every body from ``clients`` connections; seconds taken (any non-200 raises)."""
    queue = list(reversed(bodies))
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            body = queue.pop()
            response = await http.post(url, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")

    async with httpx.AsyncClient(limits=limits, timeout=120.0) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - began


def served(
    posts: list[dict[str, Any]],
    events: list[dict[str, Any]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Posts/s and interactions/s through HTTP on the shipped serve_config.yaml."""
    api_key = secrets.token_urlsafe(24)
    config = serve_config(args.config, args.serve_port)
    work_dir = Path(tempfile.mkdtemp(prefix="sp-ingest-"))
    server = ray_serve_server(config, api_key, work_dir, dashboard=False)
    _log(f"starting the default service on {server.base_url} (log {server.log_path})")
    server.start()
    try:
        post_bodies = [
            _post_body(posts[i : i + args.post_batch])
            for i in range(0, len(posts), args.post_batch)
        ]
        event_bodies = [
            _interaction_body(events[i : i + args.batch]) for i in range(0, len(events), args.batch)
        ]
        base = server.base_url
        # Warm-up: the first requests load code paths and connections, not measured.
        asyncio.run(_send_all(f"{base}/api/v1/events/posts", api_key, post_bodies[:1], 1))
        posts_s = asyncio.run(
            _send_all(f"{base}/api/v1/events/posts", api_key, post_bodies[1:], args.clients)
        )
        events_s = asyncio.run(
            _send_all(f"{base}/api/v1/events/interactions", api_key, event_bodies, args.clients)
        )
        sent_posts = len(posts) - min(args.post_batch, len(posts))
        return {
            "startup_s": server.startup_s,
            "posts_per_s": round(sent_posts / posts_s, 1),
            "interactions_per_s": round(len(events) / events_s),
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    """Measure offline, then served, and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--interactions", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=500, help="interactions per request")
    parser.add_argument("--post-batch", type=int, default=100, help="posts per request")
    parser.add_argument("--clients", type=int, default=4, help="concurrent connections")
    parser.add_argument("--serve-port", type=int, default=8131)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "serve_config.yaml")
    args = parser.parse_args(argv)

    posts, events = workload(args.posts, args.interactions)
    _log(f"offline: {len(posts)} posts, {len(events)} interactions")
    ceiling = offline(posts, events, args.batch)
    _log(f"offline: {ceiling}")
    http = served(*workload(args.posts, args.interactions), args)
    _log(f"served: {http}")
    print(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "offline": ceiling,
                "served": http,
                "served_over_offline": {
                    key: round(http[key] / ceiling[key], 2)
                    for key in ("posts_per_s", "interactions_per_s")
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
