"""Shedding load in the ingress (no Ray): a node's full queue and a full fallback bound are
503 with Retry-After, never fallback work piling up here; a degraded moderation is never
approve; the feed fallback shows only posts known to be unflagged and not hidden.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ray.serve.exceptions import BackPressureError

from deployments.ingress.app import build_fastapi_app
from deployments.ingress.circuit import FallbackGate
from deployments.ingress.errors import domain_error_response
from deployments.ingress.services import recommender as feed_service
from deployments.ingress.services.text import moderate
from deployments.ingress.state import HiddenPosts, IngressState, LazyModel
from models.exceptions import OverloadedError
from models.recommender import (
    CollaborativeTerm,
    ContentTerm,
    DiversityTerm,
    FallbackSnapshot,
    FeedRanking,
    FeedTerms,
    FreshnessTerm,
    InteractionIngestSummary,
    NeighbourTerm,
    ScoredPost,
    ScoreTerm,
)
from tests.unit.deployments.ingress.fakes import TEST_KEY, FakeNode, fake_state


def client_for(state: IngressState) -> TestClient:
    return TestClient(build_fastapi_app(state), headers={"X-API-Key": TEST_KEY})


@dataclass
class _Info:
    name: str = "tiny-fallback"
    version: str = "0"
    device: str = "cpu"


class CountingFallback:
    """An embedded moderation model that counts its runs; ``gate`` (when set) holds each run
    until it is set, so runs overlap."""

    info = _Info()

    def __init__(self, score: float = 0.05, gate: threading.Event | None = None) -> None:
        self.score = score
        self.gate = gate
        self.runs = 0

    def predict_batch(self, texts: list[str]) -> list[dict[str, float]]:
        self.runs += 1
        if self.gate is not None:
            assert self.gate.wait(10), "the test never released the fallback"
        return [{"offensive": self.score} for _ in texts]


def with_fallback(state: IngressState, model: CountingFallback) -> IngressState:
    state.fallbacks.text_models["moderation"] = LazyModel(lambda: model)  # type: ignore[arg-type,return-value]
    return state


# ---- the error mapping --------------------------------------------------------------------
def test_overloaded_and_back_pressure_errors_are_503_with_retry_after_in_whole_seconds() -> None:
    shed = domain_error_response(OverloadedError("busy; retry later", 1.2))
    assert shed.status_code == 503
    assert shed.headers["Retry-After"] == "2"  # rounded up, never earlier than asked
    assert b'"code":"overloaded"' in shed.body
    ray_full = domain_error_response(BackPressureError(10, 10))
    assert ray_full.status_code == 503 and ray_full.headers["Retry-After"] == "1"
    tiny = domain_error_response(OverloadedError("busy", 0.01))
    assert tiny.headers["Retry-After"] == "1"


# ---- a node's full queue --------------------------------------------------------------------
def test_a_full_node_queue_is_503_not_a_fallback_and_not_a_breaker_failure() -> None:
    full = FakeNode("TextModeration", predict_many=BackPressureError(128, 128, 503, 3.0))
    fallback = CountingFallback()
    state = with_fallback(fake_state({"moderation": full}), fallback)
    threshold = state.config.circuit_breaker.failure_threshold
    with client_for(state) as client:
        responses = [
            client.post("/api/v1/moderation/text", json={"text": "hi"})
            for _ in range(threshold + 2)
        ]
    assert {r.status_code for r in responses} == {503}
    # The node's own backpressure_config delay is passed on.
    assert {r.headers["Retry-After"] for r in responses} == {"3"}
    assert responses[0].json()["error"]["code"] == "overloaded"
    assert fallback.runs == 0, "shed load must not become fallback work in the ingress"
    breaker = state.breakers.get("TextModeration")
    assert breaker.state(state.config.circuit_breaker, time.monotonic()) == "closed"


def test_a_full_node_queue_on_a_route_without_fallback_keeps_its_retry_after() -> None:
    trends = FakeNode("Trends", trends=BackPressureError(5, 5))
    state = fake_state({"trends": trends}, {"limits": {"retry_after_s": 4.0}})
    with client_for(state) as client:
        response = client.get("/api/v1/trends")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "4"  # Ray gave none: limits.retry_after_s


# ---- the fallback bound ---------------------------------------------------------------------
def test_fallback_gate_counts_and_refuses_beyond_the_limit() -> None:
    gate = FallbackGate()
    assert gate.try_enter(2) and gate.try_enter(2)
    assert not gate.try_enter(2)
    gate.leave()
    assert gate.try_enter(2)
    assert gate.running == 2


def test_fallbacks_beyond_the_bound_are_shed_with_503_while_the_bound_runs() -> None:
    release = threading.Event()
    fallback = CountingFallback(gate=release)
    broken = FakeNode("TextModeration", predict_many=RuntimeError("down"))
    state = with_fallback(
        fake_state({"moderation": broken}, {"limits": {"max_concurrent_fallbacks": 2}}), fallback
    )

    async def scenario() -> list[Any]:
        tasks = [asyncio.ensure_future(moderate(state, [f"t{i}"])) for i in range(5)]
        # Two fallbacks hold the bound; the other three find it full and are shed at once.
        deadline = time.monotonic() + 10
        while sum(t.done() for t in tasks) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    shed = [o for o in outcomes if isinstance(o, OverloadedError)]
    answered = [o for o in outcomes if isinstance(o, list)]
    assert len(shed) == 3 and len(answered) == 2
    assert "max_concurrent_fallbacks" in shed[0].message
    assert fallback.runs == 2
    assert state.fallback_gate.running == 0, "every slot is given back"


# ---- degraded moderation --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("degraded_action", "score", "expected"),
    [
        ("flag_for_review", 0.05, "flag_for_review"),  # the fallback would approve
        ("reject", 0.05, "reject"),
        ("flag_for_review", 0.95, "reject"),  # a stricter fallback verdict stands
    ],
)
def test_a_degraded_moderation_is_never_approve(
    degraded_action: str, score: float, expected: str
) -> None:
    broken = FakeNode("TextModeration", predict_many=RuntimeError("down"))
    policy = {"moderation_policy": {"degraded_action": degraded_action}}
    state = with_fallback(fake_state({"moderation": broken}, policy), CountingFallback(score))
    with client_for(state) as client:
        body = client.post("/api/v1/moderation/text", json={"text": "hello"}).json()
    assert body["degraded"] is True
    assert body["action"] == expected and body["is_safe"] is False


# ---- the feed fallback ----------------------------------------------------------------------
def test_the_feed_fallback_leaves_out_unknown_flagged_and_hidden_posts() -> None:
    now_s = time.time()
    summary = InteractionIngestSummary(accepted=2, duplicates=0, unknown_post_ids=())
    recommender = FakeNode(
        "Recommender", rank_feed=RuntimeError("down"), ingest_interactions=summary
    )
    state = fake_state({"recommender": recommender})
    state.feed_snapshot.latest = FallbackSnapshot(
        posts={
            "fresh": (now_s - 60, 1.0, False),
            "old": (now_s - 86_400 * 5, 1.0, False),
            "flagged": (now_s, 50.0, True),
            "reported": (now_s, 50.0, False),
            "hidden": (now_s, 50.0, False),
        },
        freshness_weight=0.3,
        popularity_weight=0.2,
        freshness_half_life_s=86_400.0,
    )
    state.feed_snapshot.taken_at_s = time.monotonic()
    candidates = ["ghost", "old", "flagged", "reported", "hidden", "fresh"]
    with client_for(state) as client:
        events = [
            {"event_id": f"e{i}", "user_id": "u-1", "post_id": post, "type": kind,
             "timestamp": "2026-01-01T00:00:00Z"}
            for i, (post, kind) in enumerate([("reported", "report"), ("hidden", "hide")])
        ]  # fmt: skip
        stored = client.post("/api/v1/events/interactions", json={"interactions": events})
        assert stored.status_code == 200, stored.text
        body = client.post(
            "/api/v1/recommendations/feed",
            json={"user_id": "u-1", "candidate_post_ids": candidates, "limit": 10},
        ).json()
        other_user = client.post(
            "/api/v1/recommendations/feed",
            json={"user_id": "u-2", "candidate_post_ids": candidates, "limit": 10},
        ).json()
    assert body["degraded"] is True
    assert [p["post_id"] for p in body["posts"]] == ["fresh", "old"]
    assert body["unknown_post_ids"] == ["ghost"]
    assert set(body["filtered_post_ids"]) == {"flagged", "reported", "hidden"}
    # Another user's hides are theirs alone.
    assert {p["post_id"] for p in other_user["posts"]} == {"fresh", "old", "reported", "hidden"}


def test_a_healthy_feed_teaches_the_fallback_the_posts_it_filtered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ranking = FeedRanking(
        posts=(ScoredPost("a", 1.0),),
        unknown_post_ids=(),
        filtered_post_ids=("hid-long-ago",),
        terms=FeedTerms(
            collaborative=CollaborativeTerm(False, 0.0, None, "off"),
            content=ContentTerm(False, 0.0, "off"),
            freshness=FreshnessTerm(True, 0.3, 86_400.0),
            popularity=ScoreTerm(True, 0.2),
            diversity=DiversityTerm(False, 1.0),
            neighbour=NeighbourTerm(False, 0.0, 0, "off"),
        ),
        cold_start=False,
    )
    state = fake_state({"recommender": FakeNode("Recommender", rank_feed=ranking)})
    monkeypatch.setattr(feed_service, "refresh_feed_snapshot", lambda *_: None)
    result = asyncio.run(feed_service.rank_feed(state, "u-9", ["a", "hid-long-ago"], 5))
    assert not result.degraded
    assert state.feed_snapshot.hidden.of("u-9") == {"hid-long-ago"}
    assert state.feed_snapshot.hidden.of("u-1") == set()


def test_hidden_posts_are_bounded_per_user_and_in_users() -> None:
    hidden = HiddenPosts(max_users=2, max_posts_per_user=2)
    hidden.add("a", ["p1", "p2", "p3"])
    assert hidden.of("a") == {"p2", "p3"}
    hidden.add("b", ["p1"])
    hidden.add("c", ["p1"])
    assert len(hidden) == 2 and hidden.of("a") == set()
