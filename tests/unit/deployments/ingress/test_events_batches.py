"""Event batches through the real ingress app and Recommender node class, in process (no Ray):
a malformed event is refused with its index and field and nothing of its batch is applied;
events for unknown posts are counted and reported, never a failed batch (issue 20)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from deployments.ingress.app import build_fastapi_app
from deployments.nodes.recommender import Recommender
from models.embeddings import EMBEDDING_DIM
from tests.unit.deployments.ingress.fakes import TEST_KEY, FakeNode, LocalNode, answer, fake_state

BATCH = 500


def _vector(text: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8])
    vector = np.random.default_rng(seed).standard_normal(EMBEDDING_DIM)
    return [float(x) for x in vector / np.linalg.norm(vector)]


@pytest.fixture
def client() -> Iterator[TestClient]:
    saved = {name: os.environ.pop(name, None) for name in ("REDIS_URL", "MONGODB_URL")}
    embedder = FakeNode("Embedder", predict_many=lambda texts: [answer(_vector(t)) for t in texts])
    recommender = LocalNode("Recommender", lambda: Recommender.func_or_class(embedder, "sp:e:"))
    state = fake_state({"embedder": embedder, "recommender": recommender})
    try:
        with TestClient(build_fastapi_app(state), headers={"X-API-Key": TEST_KEY}) as test_client:
            posts = [
                {
                    "post_id": f"p{i}",
                    "author_id": "a",
                    "text": f"post number {i} about topic {i % 5}",
                    "created_at": "2026-01-01T00:00:00Z",
                }
                for i in range(50)
            ]
            assert (
                test_client.post("/api/v1/events/posts", json={"posts": posts}).status_code == 200
            )
            yield test_client
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value


def _events(prefix: str, count: int = BATCH) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{prefix}-{i}",
            "user_id": f"u{i % 40}",
            "post_id": f"p{i % 50}",
            "type": "like",
            "timestamp": "2026-01-02T00:00:00Z",
        }
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("index", "bad", "field"),
    [
        (437, {"type": "love"}, "interactions[437].type"),
        (499, {"timestamp": "2999-01-01T00:00:00Z"}, "interactions[499].timestamp"),
        (0, {"user_id": "   "}, "interactions[0].user_id"),
        (250, {"event_id": 7}, "interactions[250].event_id"),
    ],
)
def test_a_malformed_event_refuses_the_batch_naming_index_and_field(
    client: TestClient, index: int, bad: dict[str, Any], field: str
) -> None:
    events = _events("b")
    events[index] = {**events[index], **bad}
    response = client.post("/api/v1/events/interactions", json={"interactions": events})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    # Nothing was half-applied: the corrected batch is accepted whole, no event a duplicate.
    fixed = client.post("/api/v1/events/interactions", json={"interactions": _events("b")})
    assert fixed.status_code == 200
    assert (fixed.json()["accepted"], fixed.json()["duplicates"]) == (BATCH, 0)


def test_an_event_that_is_not_an_object_names_its_index(client: TestClient) -> None:
    events: list[Any] = _events("c", 10)
    events[3] = "like"
    response = client.post("/api/v1/events/interactions", json={"interactions": events})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "interactions[3]"


def test_a_batch_over_the_limit_is_refused_whole(client: TestClient) -> None:
    response = client.post(
        "/api/v1/events/interactions", json={"interactions": _events("d", BATCH + 1)}
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "interactions"


def test_events_for_unknown_posts_are_counted_and_reported(client: TestClient) -> None:
    events = _events("e", 100)
    for i in range(0, 100, 10):  # 10 events on 2 posts nobody sent
        events[i] = {**events[i], "post_id": f"ghost{i % 20}"}
    events[1] = {**events[1], "post_id": "ghost0", "type": "hide"}
    response = client.post("/api/v1/events/interactions", json={"interactions": events})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 100
    assert sorted(body["unknown_post_ids"]) == ["ghost0", "ghost10"]
    assert body["unknown_post_events"] == 11
    # The rest of the batch moved popularity and profiles: the users' feeds are personal.
    feed = client.post(
        "/api/v1/recommendations/feed",
        json={"user_id": "u1", "candidate_post_ids": ["p1", "p2", "ghost0"]},
    )
    assert feed.status_code == 200
    assert feed.json()["terms"]["content"]["used"] is True
    assert "ghost0" in feed.json()["unknown_post_ids"]
