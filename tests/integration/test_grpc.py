"""AIService over Ray Serve's gRPC proxy: moderation and feed ranking, keys and bad input, and
the aspect-sentiment method routed to the Ingress.

The session cluster's Serve runs the gRPC proxy with our servicer (conftest ``grpc_target``);
the graph has the recommender enabled (in-process state, no Redis needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest

from deployments.app import build_graph
from deployments.protos import ai_service_pb2 as pb
from deployments.protos.ai_service_pb2_grpc import AIServiceStub
from tests.integration.conftest import OTHER_API_KEY, TEST_API_KEY, deploy, embedded_args, undeploy

pytestmark = pytest.mark.integration

APP = "socialplay"
SMALL = {"ray_actor_options": {"num_cpus": 0.1}}
KEY = (("x-api-key", TEST_API_KEY), ("application", APP))
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def stub(base_url: str, grpc_target: str) -> Iterator[AIServiceStub]:
    graph = build_graph(
        embedded_args(recommender={"enabled": True, "redis_key_prefix": "sp-grpc:"}),
        dict.fromkeys(("Ingress", "TextModeration", "Sentiment", "Embedder", "Recommender"), SMALL),
    )
    deploy(graph, base_url, name=APP)
    with grpc.insecure_channel(grpc_target) as channel:
        yield AIServiceStub(channel)
    undeploy(APP)


def test_moderate_content_judges_toxic_and_clean_text(
    stub: AIServiceStub, client: httpx.Client
) -> None:
    toxic = stub.ModerateContent(
        pb.ModerationRequest(content="you are a fucking idiot and a piece of shit"),
        metadata=KEY,
        timeout=30,
    )
    clean = stub.ModerateContent(
        pb.ModerationRequest(content="have a lovely day, the park looks beautiful"),
        metadata=KEY,
        timeout=30,
    )
    assert toxic.is_safe is False and toxic.action in {"flag_for_review", "reject"}
    assert list(toxic.flagged_categories) == ["offensive"]
    assert toxic.scores["offensive"] > clean.scores["offensive"]
    assert clean.is_safe is True and clean.action == "approve"
    assert clean.model.name == "alt-profanity-check" and clean.model.version
    assert clean.degraded is False and clean.degraded_reason == ""
    # gRPC decisions are audited like HTTP ones, and moderators find them by id.
    assert len(toxic.decision_id) == 32 and toxic.decision_id != clean.decision_id
    record = client.get(f"/api/v1/moderation/decisions/{toxic.decision_id}")
    assert record.status_code == 200, record.text
    assert record.json()["route"] == "grpc" and record.json()["action"] == toxic.action


def test_moderate_content_refuses_missing_or_wrong_key_and_empty_text(
    stub: AIServiceStub,
) -> None:
    request = pb.ModerationRequest(content="hello")
    with pytest.raises(grpc.RpcError) as missing:
        stub.ModerateContent(request, metadata=(("application", APP),), timeout=30)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "x-api-key" in (missing.value.details() or "")
    with pytest.raises(grpc.RpcError) as wrong:
        stub.ModerateContent(
            request, metadata=(("x-api-key", "nope"), ("application", APP)), timeout=30
        )
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED, "like HTTP: 401, not 403"
    with pytest.raises(grpc.RpcError) as empty:
        stub.ModerateContent(pb.ModerationRequest(content="   "), metadata=KEY, timeout=30)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (empty.value.details() or "").startswith("content")
    # Any configured key works, as over HTTP.
    other = (("x-api-key", OTHER_API_KEY), ("application", APP))
    assert stub.ModerateContent(request, metadata=other, timeout=30).action == "approve"


def test_analyze_aspect_sentiment_reaches_the_ingress_method(stub: AIServiceStub) -> None:
    # This graph runs no AspectSentiment node: the proxy routes the new RPC to the Ingress,
    # which answers the route's feature_not_enabled (an unrouted method: UNIMPLEMENTED).
    with pytest.raises(grpc.RpcError) as not_enabled:
        stub.AnalyzeAspectSentiment(
            pb.AspectSentimentRequest(text="The food was great.", aspects=["food"]),
            metadata=KEY,
            timeout=30,
        )
    assert not_enabled.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "aspect sentiment" in (not_enabled.value.details() or "")


def test_get_recommendations_ranks_like_the_http_feed(
    stub: AIServiceStub, base_url: str, client: httpx.Client
) -> None:
    posts = [
        {
            "post_id": f"grpc-{topic}-{i}",
            "author_id": "author-1",
            "text": text,
            "tags": [f"#{topic}"],
            "created_at": (NOW - timedelta(hours=1)).isoformat(),
        }
        for i, (topic, text) in enumerate(
            [
                ("cooking", "a slow-cooked tomato sauce with fresh basil and garlic"),
                ("cooking", "how to bake sourdough bread with a crisp crust"),
                ("football", "the striker scored twice in the derby last night"),
            ]
        )
    ]
    assert client.post("/api/v1/events/posts", json={"posts": posts}).status_code == 200
    like = {
        "event_id": "grpc-like-1",
        "user_id": "grpc-cook",
        "post_id": "grpc-cooking-0",
        "type": "like",
        "timestamp": NOW.isoformat(),
    }
    assert client.post("/api/v1/events/interactions", json={"interactions": [like]}).is_success
    candidates = ["grpc-football-2", "grpc-cooking-1", "never-seen"]

    answer = stub.GetRecommendations(
        pb.RecommendationRequest(user_id="grpc-cook", candidate_post_ids=candidates, limit=2),
        metadata=KEY,
        timeout=30,
    )
    assert {p.post_id for p in answer.posts} == {"grpc-cooking-1", "grpc-football-2"}
    assert list(answer.unknown_post_ids) == ["never-seen"]
    assert answer.degraded is False and answer.degraded_reason == ""
    assert all(p.score > 0 for p in answer.posts), "ranked by the recommender, not unranked"
    http = client.post(
        "/api/v1/recommendations/feed",
        json={"user_id": "grpc-cook", "candidate_post_ids": candidates, "limit": 2},
    ).json()
    assert [p["post_id"] for p in http["posts"]] == [p.post_id for p in answer.posts]
    assert [p["score"] for p in http["posts"]] == pytest.approx(
        [p.score for p in answer.posts], abs=1e-5
    )


def test_get_recommendations_refuses_bad_input(stub: AIServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as no_candidates:
        stub.GetRecommendations(pb.RecommendationRequest(user_id="u1"), metadata=KEY, timeout=30)
    assert no_candidates.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (no_candidates.value.details() or "").startswith("candidate_post_ids")
    with pytest.raises(grpc.RpcError) as no_user:
        stub.GetRecommendations(
            pb.RecommendationRequest(candidate_post_ids=["p1"]), metadata=KEY, timeout=30
        )
    assert no_user.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id" in (no_user.value.details() or "")
    with pytest.raises(grpc.RpcError) as no_key:
        stub.GetRecommendations(
            pb.RecommendationRequest(user_id="u1", candidate_post_ids=["p1"]),
            metadata=(("application", APP),),
            timeout=30,
        )
    assert no_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
