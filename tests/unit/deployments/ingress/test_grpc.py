"""The gRPC methods over the same services as HTTP, with a fake context (no Ray)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from ray.serve.exceptions import BackPressureError

from deployments.ingress.grpc import (
    analyze_aspect_sentiment,
    get_recommendations,
    moderate_content,
)
from deployments.protos import ai_service_pb2 as pb
from models.aspect_types import AspectRequest
from tests.unit.deployments.ingress.fakes import TEST_KEY, FakeNode, answer, fake_state
from tests.unit.deployments.ingress.test_aspects import POSITIVE, TEXT
from tests.unit.deployments.ingress.test_aspects import _node as aspect_node


class FakeContext:
    """What the methods use of Ray's gRPC context: metadata in, status code and details out."""

    def __init__(self, key: str | None = TEST_KEY, peer: str = "ipv4:127.0.0.1:50000") -> None:
        self.metadata = [] if key is None else [("x-api-key", key)]
        self._peer = peer
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailing_metadata: list[tuple[str, str]] = []

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def peer(self) -> str:
        return self._peer

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, metadata: list[tuple[str, str]]) -> None:
        self.trailing_metadata = metadata


def moderation_node() -> FakeNode:
    return FakeNode(
        "TextModeration",
        predict_many=lambda texts: [answer({"offensive": 0.95}, "m1") for _ in texts],
    )


def test_moderate_content_is_the_moderation_service_audited() -> None:
    state = fake_state({"moderation": moderation_node()})
    context = FakeContext()
    request = pb.ModerationRequest(content="you idiot")
    reply = asyncio.run(moderate_content(state, request, context))  # type: ignore[arg-type]
    assert context.code is None
    assert reply.action == "reject" and not reply.is_safe and not reply.degraded
    assert reply.model.version == "m1" and reply.scores["offensive"] == pytest.approx(0.95)
    assert state.audit_log.buffered_document(reply.decision_id)["route"] == "grpc"  # type: ignore[index]


def test_keys_and_input_errors_become_status_codes() -> None:
    state = fake_state({"moderation": moderation_node()})
    request = pb.ModerationRequest(content="hello")
    contexts: dict[str, Any] = {"none": FakeContext(None), "wrong": FakeContext("nope")}
    for context in contexts.values():
        assert asyncio.run(moderate_content(state, request, context)) == pb.ModerationResponse()
    assert contexts["none"].code == grpc.StatusCode.UNAUTHENTICATED
    assert contexts["wrong"].code == grpc.StatusCode.UNAUTHENTICATED, "like HTTP: 401, not 403"

    blank = FakeContext()
    asyncio.run(moderate_content(state, pb.ModerationRequest(content=" "), blank))  # type: ignore[arg-type]
    assert blank.code == grpc.StatusCode.INVALID_ARGUMENT
    assert blank.details == "content: content is empty; send some text"

    no_recommender = FakeContext()
    feed = pb.RecommendationRequest(user_id="u1", candidate_post_ids=["p1"])
    asyncio.run(get_recommendations(state, feed, no_recommender))  # type: ignore[arg-type]
    assert no_recommender.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "recommender node" in no_recommender.details


def test_get_recommendations_without_a_snapshot_returns_no_post_of_unknown_flag_status() -> None:
    broken = FakeNode("Recommender", rank_feed=RuntimeError("down"))
    state = fake_state({"recommender": broken})
    context = FakeContext()
    request = pb.RecommendationRequest(user_id="u1", candidate_post_ids=["b", "a", "b"])
    reply = asyncio.run(get_recommendations(state, request, context))  # type: ignore[arg-type]
    assert context.code is None
    # No snapshot yet: no candidate's flag status is known, so none is shown.
    assert list(reply.posts) == []
    assert list(reply.unknown_post_ids) == ["b", "a"]
    assert reply.degraded and reply.cold_start
    assert reply.degraded_reason.startswith("node failed (RuntimeError); no snapshot yet")


def test_shed_load_is_unavailable_with_a_retry_after_trailer() -> None:
    full = FakeNode("TextModeration", predict_many=BackPressureError(128, 128, 503, 2.5))
    context = FakeContext()
    request = pb.ModerationRequest(content="hello")
    reply = asyncio.run(moderate_content(fake_state({"moderation": full}), request, context))  # type: ignore[arg-type]
    assert reply == pb.ModerationResponse()
    assert context.code == grpc.StatusCode.UNAVAILABLE
    assert context.trailing_metadata == [("retry-after", "3")]

    busy = FakeNode("Recommender", rank_feed=BackPressureError(5, 5))
    feed_context = FakeContext()
    feed = pb.RecommendationRequest(user_id="u1", candidate_post_ids=["p1"])
    asyncio.run(get_recommendations(fake_state({"recommender": busy}), feed, feed_context))  # type: ignore[arg-type]
    assert feed_context.code == grpc.StatusCode.UNAVAILABLE
    assert feed_context.trailing_metadata[0][0] == "retry-after"


def _aspects(state: Any, request: pb.AspectSentimentRequest) -> tuple[Any, FakeContext]:
    context = FakeContext()
    return asyncio.run(analyze_aspect_sentiment(state, request, context)), context  # type: ignore[arg-type]


def test_analyze_aspect_sentiment_is_the_aspects_route() -> None:
    node = aspect_node()
    state = fake_state({"aspects": node})
    request = pb.AspectSentimentRequest(text=TEXT, aspects=["food", "Service", "wine"])
    reply, context = _aspects(state, request)
    assert context.code is None
    assert reply.mode == "given" and not reply.degraded and reply.degraded_reason == ""
    assert reply.model.name == "aspect-sentiment" and reply.model.version == "shipped-abc"
    food, service, wine = reply.aspects
    assert (food.aspect, food.found, food.label) == ("food", True, "positive")
    assert food.scores.positive == pytest.approx(POSITIVE["positive"])
    assert [(s.start, s.end) for s in food.spans] == [(4, 8)]
    assert (service.label, [(s.start, s.end) for s in service.spans]) == ("negative", [(27, 34)])
    assert (wine.found, wine.label, wine.HasField("scores"), list(wine.spans)) == (
        False,
        "",
        False,
        [],
    )
    assert node.predict.calls[0] == (AspectRequest(TEXT, aspects=("food", "Service", "wine")),)

    # proto3 has no unset list: no aspects and no categories asks the model to find them.
    found, _ = _aspects(state, pb.AspectSentimentRequest(text=TEXT))
    assert found.mode == "extracted" and [a.aspect for a in found.aspects] == ["food", "service"]
    assert node.predict.calls[1] == (AspectRequest(TEXT),)
    categories, _ = _aspects(state, pb.AspectSentimentRequest(text=TEXT, categories=["staff"]))
    assert categories.mode == "categories" and list(categories.aspects) == []
    assert [(c.category, c.label) for c in categories.categories] == [("staff", "positive")]


def test_aspect_sentiment_errors_become_status_codes() -> None:
    node = aspect_node()
    state = fake_state({"aspects": node})
    both = pb.AspectSentimentRequest(text=TEXT, aspects=["food"], categories=["food"])
    for request, details in (
        (pb.AspectSentimentRequest(text=" "), "text: text is empty"),
        (both, "categories:"),
        (pb.AspectSentimentRequest(text=TEXT, categories=["parking"]), "categories[0]:"),
    ):
        reply, context = _aspects(state, request)
        assert reply == pb.AspectSentimentResponse()
        assert context.code == grpc.StatusCode.INVALID_ARGUMENT
        assert context.details.startswith(details), context.details
    assert node.predict.calls == [], "refused before the node"

    reply, context = _aspects(fake_state({}), pb.AspectSentimentRequest(text=TEXT))
    assert context.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "aspect sentiment" in context.details

    no_key = FakeContext(None)
    asyncio.run(analyze_aspect_sentiment(state, pb.AspectSentimentRequest(text=TEXT), no_key))  # type: ignore[arg-type]
    assert no_key.code == grpc.StatusCode.UNAUTHENTICATED


def test_a_failing_aspect_node_is_answered_by_the_fallback_marked_degraded() -> None:
    state = fake_state({"aspects": aspect_node(RuntimeError("boom"))})
    reply, context = _aspects(state, pb.AspectSentimentRequest(text=TEXT, aspects=["food"]))
    assert context.code is None
    assert reply.degraded and reply.degraded_reason == "node failed (RuntimeError)"
    assert reply.model.name == "vader-window" and reply.aspects[0].label == "positive"
