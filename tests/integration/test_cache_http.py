"""The node result cache over HTTP: Redis hits reported in /health, and a Redis outage that
costs the cache only, never an answer.

One deploy for the module (text graph, cache on in TextModeration and Sentiment) against a
private redis-server started here; the last test kills that server.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deployments.app import build_graph
from tests.fixtures.redis_server import throwaway_redis
from tests.integration.conftest import deploy, embedded_args, health_detail, undeploy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_process(base_url: str) -> Iterator[subprocess.Popen[bytes]]:
    with throwaway_redis() as (url, process):
        cached_node = {
            # REDIS_URL reaches the replica through its runtime_env (read by Settings()).
            "ray_actor_options": {"num_cpus": 0.1, "runtime_env": {"env_vars": {"REDIS_URL": url}}},
            "user_config": {
                "cache": {"enabled": True, "ttl_s": 600, "key_prefix": "sp-it-cache:"},
            },
        }
        graph = build_graph(
            embedded_args(),
            {
                "Ingress": {"ray_actor_options": {"num_cpus": 0.1}},
                "TextModeration": cached_node,
                "Sentiment": cached_node,
            },
        )
        deploy(graph, base_url)
        yield process
        undeploy()


def _cache(base_url: str, node: str) -> dict[str, Any]:
    body = health_detail(base_url)
    assert body["nodes"][node]["status"] == "ok", body
    cache = body["nodes"][node]["cache"]
    assert isinstance(cache, dict)
    return cache


def _text() -> str:
    # A fresh text per test: the counters below must move because of this test alone.
    return f"what a lovely walk in the park today {uuid.uuid4().hex[:8]}"


def test_the_same_text_twice_is_a_cache_hit(client: httpx.Client, redis_process: Any) -> None:
    base_url = str(client.base_url).rstrip("/")
    before = _cache(base_url, "moderation")
    assert (before["backend"], before["state"]) == ("redis", "up")
    text = _text()
    first = client.post("/api/v1/moderation/text", json={"text": text})
    second = client.post("/api/v1/moderation/text", json={"text": text})
    assert first.status_code == second.status_code == 200, second.text
    assert second.json()["scores"] == first.json()["scores"]
    assert second.json()["model"] == first.json()["model"]
    after = _cache(base_url, "moderation")
    assert after["hits"] == before["hits"] + 1
    assert after["misses"] == before["misses"] + 1
    assert after["errors"] == 0

    sentiment_before = _cache(base_url, "sentiment")
    answers = [client.post("/api/v1/sentiment/analyze", json={"text": text}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["label"] == answers[1].json()["label"]
    assert _cache(base_url, "sentiment")["hits"] == sentiment_before["hits"] + 1


def test_redis_outage_keeps_answering_and_shows_the_cache_down(
    client: httpx.Client, redis_process: subprocess.Popen[bytes]
) -> None:
    base_url = str(client.base_url).rstrip("/")
    text = _text()
    assert client.post("/api/v1/moderation/text", json={"text": text}).status_code == 200

    redis_process.kill()
    redis_process.wait(timeout=10)
    for candidate in (text, _text()):
        response = client.post("/api/v1/moderation/text", json={"text": candidate})
        assert response.status_code == 200, response.text
        assert response.json()["degraded"] is False  # the node answered, from its model
    cache = _cache(base_url, "moderation")
    assert cache["state"] == "down" and cache["errors"] >= 2
    assert cache["last_error"] and "Error" in cache["last_error"]
    health = health_detail(base_url)
    assert health["status"] == "ok"
