"""The ingress app from its factory, over a fake state whose nodes are small async fakes (no Ray).

A request travels route -> service -> node handle and back; domain errors come back as their
HTTP status and ``{"error": ...}`` body; the guard checks keys and body sizes first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from configs.ingress import IngressConfig
from deployments.ingress.app import build_fastapi_app
from deployments.ingress.state import IngressState, LazyModel
from models.replies import ReplyDecision
from models.sentiment import PolarityScores, SentimentScores
from tests.unit.deployments.ingress.fakes import TEST_KEY, FakeInfo, FakeNode, answer, fake_state

OPENAPI_SNAPSHOT = Path(__file__).with_name("openapi.json")


def client_for(state: IngressState, key: str | None = TEST_KEY) -> TestClient:
    headers = {"X-API-Key": key} if key is not None else {}
    return TestClient(build_fastapi_app(state), headers=headers)


def moderation_node(score: float) -> FakeNode:
    """Answers every text with one ``offensive`` score; single texts arrive coalesced."""
    return FakeNode(
        "TextModeration",
        predict_many=lambda texts: [answer({"offensive": score}, "m1") for _ in texts],
        info=FakeInfo(name="fake", version="m1", device="cpu"),
    )


def sentiment_node() -> FakeNode:
    result = SentimentScores("positive", PolarityScores(0.9, 0.05, 0.05), confidence=0.9)
    return FakeNode(
        "Sentiment",
        predict_many=lambda texts: [answer(result, "s1") for _ in texts],
        info=FakeInfo(name="fake", version="s1", device="cpu"),
    )


@pytest.fixture
def text_state() -> IngressState:
    return fake_state({"moderation": moderation_node(0.95), "sentiment": sentiment_node()})


@pytest.fixture
def client(text_state: IngressState) -> Iterator[TestClient]:
    with client_for(text_state) as test_client:
        yield test_client


# ---- a route through its service to the node -----------------------------------------------
def test_moderate_text_goes_through_the_service_to_the_node(
    client: TestClient, text_state: IngressState
) -> None:
    response = client.post("/api/v1/moderation/text", json={"text": "you idiot"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["action"] == "reject" and body["is_safe"] is False
    assert body["scores"] == {"offensive": 0.95} and body["overall"] == 0.95
    assert body["flagged_categories"] == ["offensive"]
    assert body["model"] == {"name": "fake", "version": "m1", "device": "cpu"}
    assert body["degraded"] is False and body["degraded_reason"] is None
    assert body["variant"] is None and body["experiment"] is None
    assert len(body["decision_id"]) == 32, "every moderation answer is audited"
    # Coalesced: the single text left as a one-item predict_many call.
    assert text_state.nodes["moderation"].methods["predict_many"].calls == [(["you idiot"],)]  # type: ignore[attr-defined]
    assert text_state.audit_log.buffered_document(body["decision_id"]) is not None


def test_batch_routes_send_one_bulk_call(client: TestClient, text_state: IngressState) -> None:
    response = client.post("/api/v1/sentiment/batch", json={"texts": ["great", "lovely"]})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["label"] for r in results] == ["positive", "positive"]
    assert results[0]["model"]["version"] == "s1" and results[0]["degraded"] is False
    calls = text_state.nodes["sentiment"].methods["predict_many"].calls  # type: ignore[attr-defined]
    assert calls == [(["great", "lovely"],)]


@dataclass
class _Info:
    name: str = "tiny-fallback"
    version: str = "0"
    device: str = "cpu"


class _FallbackModerator:
    info = _Info()  # what the services read of a ModelInfo

    def predict_batch(self, texts: list[str]) -> list[dict[str, float]]:
        return [{"offensive": 0.6} for _ in texts]


def test_a_failing_node_is_answered_by_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = FakeNode("TextModeration", predict_many=RuntimeError("model crashed"))
    state = fake_state({"moderation": broken, "sentiment": sentiment_node()})
    state.fallbacks.text_models["moderation"] = LazyModel(_FallbackModerator)  # type: ignore[arg-type]
    with client_for(state) as client:
        body = client.post("/api/v1/moderation/text", json={"text": "hm"}).json()
    assert body["degraded"] is True
    assert body["degraded_reason"] == "node failed (RuntimeError)"
    assert body["action"] == "flag_for_review"
    assert body["model"] == {"name": "tiny-fallback", "version": "0", "device": "cpu"}


def test_smart_replies_ask_the_moderation_service_first() -> None:
    replies = FakeNode("SmartReply", predict=answer(ReplyDecision(suggestions=())))
    state = fake_state({"moderation": moderation_node(0.7), "replies": replies})
    with client_for(state) as client:
        response = client.post("/api/v1/replies/suggest", json={"message": "you idiot"})
    assert response.status_code == 200, response.text
    assert response.json()["suggestions"] == []
    assert response.json()["reason"] == "flagged_by_moderation"
    assert response.json()["moderation_action"] == "flag_for_review"


# ---- domain errors to HTTP ---------------------------------------------------------------
def test_a_feature_the_graph_does_not_run_is_422_feature_not_enabled(client: TestClient) -> None:
    response = client.get("/api/v1/trends")
    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "code": "feature_not_enabled",
            "message": "trends needs the trends node, which this deployment does not run; "
            "enable it in serve_config.yaml",
            "field": "trends",
        }
    }
    image = client.post("/api/v1/moderation/image", json={"image_url": "https://a.example/x"})
    assert image.status_code == 422
    assert image.json()["error"]["code"] == "feature_not_enabled"
    assert "nsfw_model.enabled: true" in image.json()["error"]["message"]


def test_invalid_input_comes_back_before_the_feature_check(client: TestClient) -> None:
    response = client.get("/api/v1/trends", params={"window_hours": -1})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_field"
    assert response.json()["error"]["field"] == "window_hours"


def test_a_failing_node_without_fallback_is_503_and_unknown_posts_404() -> None:
    trends = FakeNode("Trends", trends=TimeoutError())
    recommender = FakeNode("Recommender", similar_posts=None)
    state = fake_state({"trends": trends, "recommender": recommender})
    with client_for(state) as client:
        down = client.get("/api/v1/trends")
        unknown = client.post("/api/v1/recommendations/similar-posts/p-1")
    assert down.status_code == 503
    assert down.json()["error"] == {
        "code": "trends_unavailable",
        "message": "the trends node could not answer (node timed out); retry",
        "field": None,
    }
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {
        "code": "unknown_post",
        "message": "post_id is not known; send it to /api/v1/events/posts first",
        "field": "post_id",
    }


def test_request_validation_errors(client: TestClient) -> None:
    not_json = client.post(
        "/api/v1/moderation/text",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_json"
    missing = client.post("/api/v1/moderation/text", json={})
    assert missing.status_code == 422
    assert missing.json()["error"] == {
        "code": "invalid_field",
        "message": "text is required",
        "field": "text",
    }
    blank = client.post("/api/v1/moderation/batch", json={"texts": ["ok", "  "]})
    assert blank.json()["error"]["field"] == "texts[1]"


# ---- the guard: keys and body sizes --------------------------------------------------------
def test_api_key_is_checked_before_anything_else(text_state: IngressState) -> None:
    with client_for(text_state, key=None) as anonymous:
        missing = anonymous.post("/api/v1/moderation/text", json={"text": "hi"})
        health = anonymous.get("/health")
        detail = anonymous.get("/api/v1/health")
    with client_for(text_state, key="wrong") as wrong:
        refused = wrong.post("/api/v1/moderation/text", json={"text": "hi"})
    with client_for(text_state) as operator:
        report = operator.get("/api/v1/health")
    assert missing.status_code == 401
    assert missing.json()["error"] == {
        "code": "missing_api_key",
        "message": "send your API key in the X-API-Key header",
        "field": "X-API-Key",
    }
    assert refused.status_code == 401, "a wrong key is not authenticated either"
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert refused.json()["error"]["field"] == "X-API-Key"
    calls = text_state.nodes["moderation"].methods["predict_many"].calls  # type: ignore[attr-defined]
    assert calls == [], "a refused request reaches no node"
    assert health.status_code == 200, "/health needs no key"
    assert health.json() == {"status": "ok"}, "public liveness says ok/degraded only"
    assert detail.status_code == 401, "the detailed report needs a key"
    assert report.json()["api_keys"] == "configured"
    assert report.json()["nodes"]["moderation"] == {
        "status": "ok",
        "name": "fake",
        "version": "m1",
        "device": "cpu",
    }


def test_bodies_over_the_live_limit_are_413(text_state: IngressState) -> None:
    text_state.apply(IngressConfig.model_validate({"limits": {"max_body_bytes": 1024}}))
    with client_for(text_state) as client:
        response = client.post("/api/v1/moderation/text", json={"text": "x" * 2000})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.json()["error"]["field"] == "body"


def test_cors_origins_come_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, text_state: IngressState
) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "http://app.example")
    with client_for(text_state, key=None) as client:
        preflight = client.options(
            "/api/v1/moderation/text",
            headers={
                "Origin": "http://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "X-API-Key",
            },
        )
    assert preflight.status_code == 200, "a preflight carries no key"
    assert preflight.headers["access-control-allow-origin"] == "http://app.example"


# ---- state and contract ------------------------------------------------------------------
def test_reconfigure_refuses_experiments_on_nodes_the_graph_lacks(
    text_state: IngressState,
) -> None:
    experiment: dict[str, Any] = {
        "task": "moderation",
        "mode": "shadow",
        "candidate": "v2",
    }
    before = text_state.config
    with pytest.raises(ValueError, match=r"moderation:v2"):
        text_state.apply(IngressConfig.model_validate({"experiments": {"e1": experiment}}))
    assert text_state.config is before, "the old config stays"


def test_openapi_is_the_committed_contract(text_state: IngressState) -> None:
    spec = build_fastapi_app(text_state).openapi()
    committed = json.loads(OPENAPI_SNAPSHOT.read_text())
    assert json.loads(json.dumps(spec)) == committed, (
        "the HTTP contract changed; if that is intended, rewrite "
        f"{OPENAPI_SNAPSHOT.name} from build_fastapi_app(state).openapi() "
        "(json.dumps(spec, indent=1, sort_keys=True)) and say so in the change"
    )
