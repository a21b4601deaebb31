"""Events, feed, similar posts, interests and /health over HTTP, under serve.run.

One deploy for the module (Embedder + Recommender enabled), with the Recommender's feature
store on a private redis-server started here. The last test kills that server and checks that
the service keeps answering from its in-process mirror and says so in /health.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.app import build_graph
from pipelines.synthetic_social import post_text
from tests.fixtures.redis_server import throwaway_redis
from tests.integration.conftest import deploy, embedded_args, health_detail, undeploy

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
SMALL = {"ray_actor_options": {"num_cpus": 0.1}}


@pytest.fixture(scope="module")
def redis_process(base_url: str) -> Iterator[subprocess.Popen[bytes]]:
    with throwaway_redis() as (url, process):
        graph = build_graph(
            embedded_args(recommender={"enabled": True, "redis_key_prefix": "sp-it:"}),
            {
                "Ingress": {
                    **SMALL,
                    "user_config": {"recommendations": {"max_results": 50, "max_candidates": 200}},
                },
                "TextModeration": SMALL,
                "Sentiment": SMALL,
                "Embedder": {
                    # On the module's Redis too: the shared text vector store (embed once).
                    "ray_actor_options": {
                        "num_cpus": 0.1,
                        "runtime_env": {"env_vars": {"REDIS_URL": url}},
                    },
                    "user_config": {
                        "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01}
                    },
                },
                "Recommender": {
                    "ray_actor_options": {
                        "num_cpus": 0.1,
                        "runtime_env": {"env_vars": {"REDIS_URL": url}},
                    },
                    "user_config": {"redis_retry_s": 0.5, "cache_ttl_s": 60},
                },
            },
        )
        deploy(graph, base_url)
        yield process
        undeploy()


@pytest.fixture(scope="module")
def posts(redis_process: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    rng = random.Random(3)
    return [
        {
            "post_id": f"{topic}-{i}",
            "author_id": "author-9",
            "text": post_text(topic, rng),
            "tags": [f"#{topic.capitalize()}"],
            "created_at": (NOW - timedelta(hours=2)).isoformat(),
        }
        for topic in ("cooking", "football", "tech")
        for i in range(6)
    ]


@pytest.fixture(scope="module")
def ingested(posts: list[dict[str, Any]], base_url: str) -> list[dict[str, Any]]:
    from tests.integration.conftest import TEST_API_KEY

    with httpx.Client(base_url=base_url, headers={"X-API-Key": TEST_API_KEY}, timeout=60) as c:
        first = c.post("/api/v1/events/posts", json={"posts": posts})
        assert first.status_code == 200, first.text
        assert first.json() == {
            "accepted": len(posts),
            "unchanged": 0,
            "embedded": len(posts),
            "reused_vectors": 0,
        }
    return posts


def interaction(i: int, user: str, post: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"it-{user}-{i}",
        "user_id": user,
        "post_id": post,
        "type": kind,
        "timestamp": NOW.isoformat(),
        **extra,
    }


def test_health_reports_embedder_and_where_the_state_lives(base_url, ingested) -> None:
    body = health_detail(base_url)
    assert body["status"] == "ok", body
    recommender = body["nodes"]["recommender"]
    assert recommender["feature_store"] == {"kind": "redis", "status": "ok"}
    assert recommender["document_store"]["persisted"] is False
    assert "mongomock" in recommender["document_store"]["kind"]
    assert recommender["vector_index"] == {"kind": "hnswlib", "posts": len(ingested)}
    assert body["nodes"]["embedder"]["name"] == "all-MiniLM-L6-v2"
    # Embed once: the Embedder stored every vector it computed in the shared Redis store.
    vectors = body["nodes"]["embedder"]["text_vectors"]
    assert vectors["state"] == "on" and vectors["store"]["backend"] == "redis", vectors
    assert vectors["encoded"] >= len(ingested) and vectors["store_errors"] == 0, vectors


def test_events_are_idempotent_and_the_cooking_fan_gets_cooking_first(client, ingested) -> None:
    again = client.post("/api/v1/events/posts", json={"posts": ingested}).json()
    assert again["unchanged"] == len(ingested) and again["embedded"] == 0
    likes = [interaction(i, "cook", f"cooking-{i}", "like") for i in range(3)]
    first = client.post("/api/v1/events/interactions", json={"interactions": likes})
    assert first.json() == {
        "accepted": 3,
        "duplicates": 0,
        "unknown_post_ids": [],
        "unknown_post_events": 0,
    }
    second = client.post("/api/v1/events/interactions", json={"interactions": likes})
    assert second.json() == {
        "accepted": 0,
        "duplicates": 3,
        "unknown_post_ids": [],
        "unknown_post_events": 0,
    }
    candidates = [p["post_id"] for p in ingested if p["post_id"][-1] in "345"]
    answer = client.post(
        "/api/v1/recommendations/feed",
        json={"user_id": "cook", "candidate_post_ids": [*candidates, "never-seen"], "limit": 5},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert all(p["post_id"].startswith("cooking-") for p in body["posts"][:3]), body["posts"]
    assert body["unknown_post_ids"] == ["never-seen"]
    assert body["terms"]["collaborative"]["used"] is False
    assert body["terms"]["content"]["used"] is True and body["cached"] is False
    cached = client.post(
        "/api/v1/recommendations/feed",
        json={"user_id": "cook", "candidate_post_ids": [*candidates, "never-seen"], "limit": 5},
    ).json()
    assert cached["cached"] is True and cached["posts"] == body["posts"]


def test_hide_drops_the_cache_and_filters_the_post(client, ingested) -> None:
    request = {"user_id": "hider", "candidate_post_ids": ["tech-1", "tech-2"], "limit": 5}
    assert len(client.post("/api/v1/recommendations/feed", json=request).json()["posts"]) == 2
    hide = client.post(
        "/api/v1/events/interactions",
        json={"interactions": [interaction(1, "hider", "tech-1", "hide")]},
    )
    assert hide.status_code == 200
    body = client.post("/api/v1/recommendations/feed", json=request).json()
    assert body["cached"] is False
    assert [p["post_id"] for p in body["posts"]] == ["tech-2"]
    assert body["filtered_post_ids"] == ["tech-1"]


def test_similar_posts_and_interests(client, ingested) -> None:
    similar = client.post("/api/v1/recommendations/similar-posts/football-0", params={"limit": 3})
    assert similar.status_code == 200, similar.text
    near = [p["post_id"] for p in similar.json()["posts"]]
    assert len(near) == 3 and "football-0" not in near
    assert sum(p.startswith("football-") for p in near) >= 2
    client.post(
        "/api/v1/events/interactions",
        json={"interactions": [interaction(i, "fan", f"football-{i}", "share") for i in range(3)]},
    )
    interests = client.get("/api/v1/users/fan/interests", params={"limit": 3}).json()
    assert interests["cold_start"] is False and interests["interactions_used"] == 3
    tags = [t for t in interests["topics"] if t["source"] == "tag"]
    assert tags[0] == {"topic": "football", "weight": 1.0, "source": "tag", "cluster_id": None}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/events/posts", {"posts": []}, "posts"),
        (
            "/api/v1/events/posts",
            {"posts": [{"author_id": "a", "created_at": "2026-01-01"}]},
            "posts[0].post_id",
        ),
        (
            "/api/v1/events/posts",
            {"posts": [{"post_id": "p", "author_id": "a", "created_at": "2999-01-01T00:00:00Z"}]},
            "posts[0].created_at",
        ),
        (
            "/api/v1/events/posts",
            {"posts": [{"post_id": "p", "author_id": "a", "created_at": "yesterday"}]},
            "posts[0].created_at",
        ),
        (
            "/api/v1/events/interactions",
            {
                "interactions": [
                    interaction(1, "u", "p", "like"),
                    interaction(2, "u", "p", "like"),
                    interaction(3, "u", "p", "love"),
                ]
            },
            "interactions[2].type",
        ),
        (
            "/api/v1/events/interactions",
            {"interactions": [interaction(1, "u", "p", "like", timestamp="2999-01-01T00:00:00Z")]},
            "interactions[0].timestamp",
        ),
        (
            "/api/v1/events/interactions",
            {
                "interactions": [
                    {
                        "user_id": "u",
                        "post_id": "p",
                        "type": "like",
                        "timestamp": "2026-01-01T00:00:00Z",
                    }
                ]
            },
            "interactions[0].event_id",
        ),
        (
            "/api/v1/events/interactions",
            {"interactions": [interaction(1, "  ", "p", "like")]},
            "interactions[0].user_id",
        ),
        (
            "/api/v1/recommendations/feed",
            {"user_id": "u", "candidate_post_ids": []},
            "candidate_post_ids",
        ),
        ("/api/v1/recommendations/feed", {"candidate_post_ids": ["p"]}, "user_id"),
        (
            "/api/v1/recommendations/feed",
            {"user_id": "u", "candidate_post_ids": ["p"], "limit": 51},
            "limit",
        ),
        (
            "/api/v1/recommendations/feed",
            {"user_id": "u", "candidate_post_ids": ["p"], "limit": 0},
            "limit",
        ),
        (
            "/api/v1/recommendations/feed",
            {"user_id": "u", "candidate_post_ids": [f"p{i}" for i in range(201)]},
            "candidate_post_ids",
        ),
    ],
)
def test_bad_input_is_422_naming_the_field(client, ingested, path, body, field) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field, error


def test_bad_input_on_query_routes(client, ingested) -> None:
    unknown = client.post("/api/v1/recommendations/similar-posts/nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "post_id"
    zero = client.post("/api/v1/recommendations/similar-posts/tech-1", params={"limit": 0})
    assert zero.status_code == 422 and zero.json()["error"]["field"] == "limit"
    big = client.get("/api/v1/users/u/interests", params={"limit": 500})
    assert big.status_code == 422 and big.json()["error"]["field"] == "limit"
    keyless = httpx.post(f"{client.base_url}/api/v1/events/posts", json={"posts": []}, timeout=10)
    assert keyless.status_code == 401


def test_the_typescript_client_moderates_sends_events_and_ranks_a_feed(
    base_url: str, ingested: list[dict[str, Any]]
) -> None:
    # The committed client (clients/typescript/dist, no npm install) under Node.js, against
    # this module's app: the calls a TypeScript backend makes, and its typed errors.
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the TypeScript client's live test needs Node.js 18+")
    from tests.integration.conftest import TEST_API_KEY

    client_dir = Path(__file__).resolve().parents[2] / "clients/typescript"
    result = subprocess.run(
        [node, "test/live.mjs"],
        capture_output=True,
        text=True,
        cwd=client_dir,
        timeout=120,
        check=False,
        env={
            "PATH": os.environ["PATH"],
            "SOCIALPLAY_URL": base_url,
            "SOCIALPLAY_API_KEY": TEST_API_KEY,
        },
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["health"] == {"status": "ok"}
    assert out["moderation"]["action"] == "approve" and out["moderation"]["is_safe"] is True
    assert out["posts"]["accepted"] == 3 and out["posts"]["embedded"] == 3
    assert out["interactions"] == {
        "accepted": 1,
        "duplicates": 0,
        "unknown_post_ids": [],
        "unknown_post_events": 0,
    }
    # The fan of a pasta post gets the other cooking post before the football one.
    assert [p["post_id"] for p in out["feed"]["posts"]] == ["ts-2", "ts-3"]
    assert out["badInput"]["status"] == 422 and out["badInput"]["field"] == "text"
    assert out["badInput"]["name"] == "SocialPlayError"
    assert out["badKey"]["status"] == 401
    assert out["unreachable"]["status"] == 0 and out["unreachable"]["code"] == "network_error"


def test_zz_redis_stopped_mid_test_keeps_answering_and_health_says_so(
    client, base_url, ingested, redis_process
) -> None:
    # Runs last in this module (name order is file order here): it kills the module's Redis.
    redis_process.kill()
    redis_process.wait(timeout=10)
    request = {"user_id": "cook", "candidate_post_ids": ["cooking-4", "tech-4"], "limit": 2}
    feed = client.post("/api/v1/recommendations/feed", json=request)
    assert feed.status_code == 200, feed.text
    body = feed.json()
    assert body["degraded"] is True and "mirror" in body["degraded_reason"]
    assert body["posts"][0]["post_id"] == "cooking-4"
    events = client.post(
        "/api/v1/events/interactions",
        json={"interactions": [interaction(99, "cook", "tech-4", "hide")]},
    )
    assert events.status_code == 200 and events.json()["accepted"] == 1
    time.sleep(0.6)
    health = health_detail(base_url)
    assert health["status"] == "degraded"
    recommender = health["nodes"]["recommender"]
    assert recommender["status"] == "degraded"
    assert recommender["feature_store"]["status"] == "degraded"
    assert "in-process mirror" in recommender["feature_store"]["reason"]
