"""The gRPC methods over the same services as HTTP, with a fake context (no Ray)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from ray.serve.exceptions import BackPressureError

from deployments.ingress.grpc import get_recommendations, moderate_content
from deployments.protos import ai_service_pb2 as pb
from tests.unit.deployments.ingress.fakes import TEST_KEY, FakeNode, answer, fake_state


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
