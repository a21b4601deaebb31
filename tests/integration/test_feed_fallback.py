"""The feed's fallback over HTTP: when the Recommender fails, the ingress ranks the candidates
by freshness and popularity from the snapshot it refreshed while the node was healthy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ray import serve

from configs.nodes import ModerationModelSpec, SentimentModelSpec
from deployments.ingress.deployment import Ingress
from deployments.nodes.text_classifier import text_classifier_deployment
from models.answers import JsonObject
from models.recommender import (
    CollaborativeTerm,
    ContentTerm,
    DiversityTerm,
    FallbackSnapshot,
    FeedRanking,
    FeedTerms,
    FreshnessTerm,
    Interaction,
    InteractionIngestSummary,
    NeighbourTerm,
    ScoredPost,
    ScoreTerm,
)
from tests.integration.conftest import deploy, undeploy

pytestmark = pytest.mark.integration

DAY_S = 86_400.0


class FakeInfo:
    """What /health reads from a node's ``info()``."""

    def as_json(self) -> JsonObject:
        return {"status": "ok"}


@serve.deployment(name="FakeRecommender")
class FakeRecommender:
    """Answers feeds until broken; its snapshot knows three posts of different age and reach."""

    def __init__(self) -> None:
        self.broken = False
        self.snapshots_served = 0

    def set_broken(self, broken: bool) -> None:
        self.broken = broken

    def snapshot_count(self) -> int:
        return self.snapshots_served

    async def ingest_interactions(self, events: list[Interaction]) -> InteractionIngestSummary:
        return InteractionIngestSummary(accepted=len(events), duplicates=0, unknown_post_ids=())

    async def rank_feed(self, user_id: str, candidates: list[str], limit: int) -> FeedRanking:
        if self.broken:
            raise RuntimeError("recommender crashed")
        return FeedRanking(
            posts=tuple(ScoredPost(p, 1.0) for p in candidates[:limit]),
            unknown_post_ids=(),
            filtered_post_ids=(),
            terms=FeedTerms(
                collaborative=CollaborativeTerm(False, 0.0, None, "off"),
                content=ContentTerm(False, 0.0, "off"),
                freshness=FreshnessTerm(True, 0.3, DAY_S),
                popularity=ScoreTerm(True, 0.2),
                diversity=DiversityTerm(False, 1.0),
                neighbour=NeighbourTerm(False, 0.0, 0, "off"),
            ),
            cold_start=False,
        )

    async def fallback_snapshot(self, limit: int) -> FallbackSnapshot:
        self.snapshots_served += 1
        now_s = time.time()
        return FallbackSnapshot(
            posts={
                "old-quiet": (now_s - 10 * DAY_S, 0.0, False),
                "old-popular": (now_s - 10 * DAY_S, 400.0, False),
                "new": (now_s - 60.0, 1.0, False),
                "flagged": (now_s, 99.0, True),
            },
            freshness_weight=0.3,
            popularity_weight=0.2,
            freshness_half_life_s=DAY_S,
        )

    def info(self) -> FakeInfo:
        return FakeInfo()


@pytest.fixture(scope="module")
def recommender(base_url: str) -> Iterator[Any]:
    small = {"num_cpus": 0.1}
    graph = Ingress.options(ray_actor_options=small).bind(  # type: ignore[attr-defined]
        moderation=text_classifier_deployment("moderation")
        .options(ray_actor_options=small)
        .bind("moderation", ModerationModelSpec(kind="profanity")),
        sentiment=text_classifier_deployment("sentiment")
        .options(ray_actor_options=small)
        .bind("sentiment", SentimentModelSpec(kind="vader")),
        recommender=FakeRecommender.options(ray_actor_options=small).bind(),
    )
    deploy(graph, base_url)
    yield serve.get_deployment_handle("FakeRecommender", app_name="socialplay")
    undeploy()


def feed(client: httpx.Client) -> dict[str, Any]:
    response = client.post(
        "/api/v1/recommendations/feed",
        json={
            "user_id": "u-1",
            "candidate_post_ids": ["old-quiet", "ghost", "flagged", "old-popular", "new"],
            "limit": 10,
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_failing_recommender_feed_is_ranked_by_freshness_and_popularity(
    client: httpx.Client, recommender: Any
) -> None:
    healthy = feed(client)
    assert not healthy["degraded"]
    # The healthy answer started a background snapshot refresh; wait until it was served.
    deadline = time.monotonic() + 30
    while recommender.snapshot_count.remote().result() == 0:
        assert time.monotonic() < deadline, "the ingress never fetched a fallback snapshot"
        time.sleep(0.2)
    time.sleep(0.5)  # the ingress stores it after the call returns
    # The user hides a post while the node is healthy: the fallback must still leave it out.
    hide = {
        "event_id": "e-hide-1",
        "user_id": "u-1",
        "post_id": "old-quiet",
        "type": "hide",
        "timestamp": "2026-01-01T00:00:00Z",
    }
    stored = client.post("/api/v1/events/interactions", json={"interactions": [hide]})
    assert stored.status_code == 200, stored.text
    recommender.set_broken.remote(True).result()
    try:
        answer = feed(client)
    finally:
        recommender.set_broken.remote(False).result()
    assert answer["degraded"] is True
    assert "node failed" in answer["degraded_reason"]
    assert "freshness and popularity" in answer["degraded_reason"]
    # Newest first, then the popular old post; the flagged post, the one the user hid and the
    # one the snapshot does not know (flag status unknown) are left out.
    assert [p["post_id"] for p in answer["posts"]] == ["new", "old-popular"]
    assert answer["unknown_post_ids"] == ["ghost"]
    assert sorted(answer["filtered_post_ids"]) == ["flagged", "old-quiet"]
