"""``/api/v1/sentiment/aspects`` over fake nodes (no Ray): the answer's shape, bad input named
by field, the feature switch and the VADER-window fallback when the node fails."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.ingress.app import build_fastapi_app
from deployments.ingress.state import IngressState
from models.answers import Answer, ModelRef
from models.aspect_types import (
    AspectAnswer,
    AspectRequest,
    AspectResult,
    CategoryResult,
    aspect_spans,
)
from tests.unit.deployments.ingress.fakes import TEST_KEY, FakeNode, fake_state

ROUTE = "/api/v1/sentiment/aspects"
TEXT = "The food was great but the service was awful."
MODEL = ModelRef(name="aspect-sentiment", version="shipped-abc", device="cpu")
POSITIVE = {"positive": 0.9, "negative": 0.05, "neutral": 0.05}
NEGATIVE = {"positive": 0.05, "negative": 0.9, "neutral": 0.05}


def _client(state: IngressState) -> TestClient:
    return TestClient(build_fastapi_app(state), headers={"X-API-Key": TEST_KEY})


def _fake_model(request: AspectRequest) -> Answer[AspectAnswer]:
    """Labels 'food' positive and anything else negative; categories all positive."""
    if request.categories is not None:
        results = tuple(CategoryResult(c, "positive", POSITIVE) for c in request.categories)
        return Answer(AspectAnswer("categories", categories=results), MODEL)
    terms = request.aspects if request.aspects is not None else ("food", "service")
    items = []
    for term in terms:
        spans = tuple(aspect_spans(request.text, term))
        if not spans:
            items.append(AspectResult(term, False))
        elif term == "food":
            items.append(AspectResult(term, True, spans, "positive", POSITIVE))
        else:
            items.append(AspectResult(term, True, spans, "negative", NEGATIVE))
    mode = "given" if request.aspects is not None else "extracted"
    return Answer(AspectAnswer(mode, aspects=tuple(items)), MODEL)


def _node(outcome: object = _fake_model) -> FakeNode:
    return FakeNode("AspectSentiment", predict=outcome)


def test_given_aspects_get_labels_spans_and_found_false_for_absent_ones() -> None:
    node = _node()
    with _client(fake_state({"aspects": node})) as client:
        response = client.post(ROUTE, json={"text": TEXT, "aspects": ["food", "Service", "wine"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "given" and body["degraded"] is False
    assert body["model"] == {"name": "aspect-sentiment", "version": "shipped-abc", "device": "cpu"}
    food, service, wine = body["aspects"]
    assert food == {
        "aspect": "food",
        "found": True,
        "label": "positive",
        "scores": POSITIVE,
        "spans": [[4, 8]],
    }
    assert service["label"] == "negative" and service["spans"] == [[27, 34]]
    assert wine == {"aspect": "wine", "found": False, "label": None, "scores": None, "spans": []}
    (sent,) = node.predict.calls[0]
    assert sent == AspectRequest(TEXT, aspects=("food", "Service", "wine"))


def test_without_aspects_the_model_finds_them_and_categories_are_labelled() -> None:
    with _client(fake_state({"aspects": _node()})) as client:
        found = client.post(ROUTE, json={"text": TEXT})
        categories = client.post(ROUTE, json={"text": TEXT, "categories": ["food", "staff"]})
    assert found.status_code == 200, found.text
    assert found.json()["mode"] == "extracted"
    assert [a["aspect"] for a in found.json()["aspects"]] == ["food", "service"]
    assert categories.status_code == 200, categories.text
    assert categories.json()["mode"] == "categories" and categories.json()["aspects"] == []
    assert [c["category"] for c in categories.json()["categories"]] == ["food", "staff"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 10_001}, "text"),
        ({"text": TEXT, "aspects": []}, "aspects"),
        ({"text": TEXT, "aspects": ["food", " "]}, "aspects[1]"),
        ({"text": TEXT, "aspects": ["a"] * 17}, "aspects"),
        ({"text": TEXT, "aspects": ["x" * 101]}, "aspects[0]"),
        ({"text": TEXT, "aspects": ["food"], "categories": ["food"]}, "categories"),
        ({"text": TEXT, "categories": ["food", "parking"]}, "categories[1]"),
        ({"text": TEXT, "categories": []}, "categories"),
        ({"text": TEXT, "aspects": "food"}, "aspects"),
        ({"text": TEXT, "aspects": [3]}, "aspects[0]"),
        ({"text": TEXT, "topic": "food"}, "topic"),
        ({"aspects": ["food"]}, "text"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(body: dict[str, Any], field: str) -> None:
    node = _node()
    with _client(fake_state({"aspects": node})) as client:
        response = client.post(ROUTE, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert response.json()["error"]["code"] == "invalid_field"
    assert node.predict.calls == [], "refused before the node"


def test_a_graph_without_the_node_answers_feature_not_enabled() -> None:
    with _client(fake_state({})) as client:
        response = client.post(ROUTE, json={"text": TEXT, "aspects": ["food"]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "feature_not_enabled"
    assert "enable it in serve_config.yaml" in response.json()["error"]["message"]


def test_a_failing_node_is_answered_by_the_vader_window_marked_degraded() -> None:
    with _client(fake_state({"aspects": _node(RuntimeError("boom"))})) as client:
        response = client.post(ROUTE, json={"text": TEXT, "aspects": ["food", "service", "wine"]})
        categories = client.post(ROUTE, json={"text": TEXT, "categories": ["food"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["degraded"] is True and body["degraded_reason"] == "node failed (RuntimeError)"
    assert body["model"]["name"] == "vader-window"
    labels = {a["aspect"]: (a["found"], a["label"]) for a in body["aspects"]}
    assert labels == {
        "food": (True, "positive"),
        "service": (True, "negative"),
        "wine": (False, None),
    }
    assert categories.status_code == 200 and categories.json()["degraded"] is True


def test_a_node_serving_its_own_fallback_says_degraded() -> None:
    reason = "shipped aspect model refused (ShippedArtifactError); fallback vader-window answers"

    def refused(request: AspectRequest) -> Answer[AspectAnswer]:
        return Answer(_fake_model(request).result, MODEL, reason)

    with _client(fake_state({"aspects": _node(refused)})) as client:
        response = client.post(ROUTE, json={"text": TEXT, "aspects": ["food"]})
    assert response.status_code == 200
    assert response.json()["degraded"] is True
    assert response.json()["degraded_reason"] == reason
