"""The recommender's state (recommender_state) and its stores against the real Redis, without Ray.

Each test gets its own Redis key prefix on the shared server (127.0.0.1:6379) and deletes its
keys afterwards; the outage test runs a private redis-server and kills it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from configs.recommender import RecommenderConfig
from deployments.nodes.recommender_state import RecommenderService, embed_missing
from models.embeddings import MiniLMEmbedder
from models.ranking import CollaborativeModel
from models.recommender import (
    FeedRanking,
    Interaction,
    InteractionIngestSummary,
    Interests,
    NewPost,
    PostIngestSummary,
    SimilarPosts,
)
from pipelines.synthetic_social import post_text
from tests.fixtures.redis_server import shared_redis_or_skip, throwaway_redis, unique_prefix

NOW = time.time()
TOPICS = ["cooking", "football", "tech", "travel"]


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder.load(device="cpu")


@pytest.fixture(scope="module")
def corpus() -> list[NewPost]:
    """Eight posts per topic, all an hour old, tagged with their topic."""
    rng = random.Random(7)
    return [
        NewPost(
            post_id=f"{topic}-{i}",
            author_id="author-1",
            text=post_text(topic, rng),
            tags=(topic,),
            created_at_s=NOW - 3600.0,
        )
        for topic in TOPICS
        for i in range(8)
    ]


@pytest.fixture
def make_service() -> Iterator[Callable[..., RecommenderService]]:
    """Services on the shared Redis under a fresh prefix; their keys are deleted afterwards."""
    url = shared_redis_or_skip()
    made: list[RecommenderService] = []

    def make(**config: Any) -> RecommenderService:
        service = RecommenderService(
            RecommenderConfig(**config), redis_url=url, redis_key_prefix=unique_prefix()
        )
        made.append(service)
        return service

    yield make
    for service in made:
        service.features.clear()


def loaded(
    make: Callable[..., RecommenderService],
    corpus: list[NewPost],
    embedder: MiniLMEmbedder,
    **config: Any,
) -> RecommenderService:
    service = make(**config)
    embed_missing(service, corpus, embedder.predict_batch)
    return service


def event(i: int | str, user: str, post: str, kind: str, at: float = NOW) -> Interaction:
    return Interaction(f"e-{i}", user, post, kind, at)


def ids(answer: FeedRanking | SimilarPosts | None) -> list[str]:
    assert answer is not None
    return [item.post_id for item in answer.posts]


def test_user_who_only_likes_cooking_gets_cooking_posts_first(make_service, corpus, embedder):
    service = loaded(make_service, corpus, embedder)
    service.ingest_interactions([event(i, "cook", f"cooking-{i}", "like") for i in range(4)])
    candidates = [p.post_id for p in corpus if not p.post_id.endswith(("-0", "-1", "-2", "-3"))]
    answer = service.rank_feed("cook", candidates, 8)
    assert answer.terms.content.used and not answer.cold_start
    top = ids(answer)[:4]
    assert all(p.startswith("cooking-") for p in top), top
    assert service.info().feature_store == {"kind": "redis", "status": "ok"}


def test_sending_the_same_batches_twice_changes_nothing(make_service, corpus, embedder):
    service = loaded(make_service, corpus, embedder)
    again = service.ingest_posts(corpus, {})
    assert again == PostIngestSummary(
        accepted=0, unchanged=len(corpus), embedded=0, reused_vectors=0
    )
    batch = [event(1, "u", "tech-1", "like"), event(2, "u", "tech-2", "share")]
    first = service.ingest_interactions(batch)
    profile = service.features.get_profile("u")
    popularity = service.features.get_popularity(["tech-1", "tech-2"]).tolist()
    second = service.ingest_interactions(batch)
    assert first == InteractionIngestSummary(accepted=2, duplicates=0, unknown_post_ids=())
    assert second == InteractionIngestSummary(accepted=0, duplicates=2, unknown_post_ids=())
    assert service.features.get_popularity(["tech-1", "tech-2"]).tolist() == popularity
    after = service.features.get_profile("u")
    assert profile is not None and after is not None and after.events == profile.events == 2
    np.testing.assert_array_equal(after.vector, profile.vector)
    assert service.interactions.count() == 2


def test_duplicate_ids_inside_one_batch_count_once(make_service, corpus, embedder):
    service = loaded(make_service, corpus, embedder)
    result = service.ingest_interactions([event(1, "u", "tech-1", "like")] * 3)
    assert result == InteractionIngestSummary(accepted=1, duplicates=2, unknown_post_ids=())


def test_same_text_reuses_the_stored_vector(make_service, corpus, embedder):
    service = loaded(make_service, corpus, embedder)
    copy = replace(corpus[0], post_id="repost-1")
    assert service.missing_vectors([copy]) == {}
    result = service.ingest_posts([copy], {})
    assert result.accepted == 1 and result.reused_vectors == 1
    assert ids(service.similar_posts("repost-1", 1)) == [corpus[0].post_id]


def test_cold_start_user_and_post_rank_by_popularity_and_freshness(make_service, corpus, embedder):
    service = loaded(make_service, corpus, embedder)
    service.ingest_interactions([event(i, f"fan-{i}", "travel-5", "like") for i in range(5)])
    brand_new = replace(corpus[0], post_id="new-post", text="fresh post", created_at_s=NOW)
    embed_missing(service, [brand_new], embedder.predict_batch)
    answer = service.rank_feed("nobody", ["travel-5", "tech-3", "new-post", "ghost"], 10)
    assert answer.cold_start and not answer.terms.content.used
    assert "cold start" in str(answer.terms.content.reason)
    assert answer.unknown_post_ids == ("ghost",)
    # Popular beats old-and-unpopular; the new post with no history still ranks above it.
    order = ids(answer)
    assert order.index("travel-5") < order.index("tech-3")
    assert order.index("new-post") < order.index("tech-3")
    assert answer.terms.collaborative.used is False
    assert "no matrix-factorisation model" in str(answer.terms.collaborative.reason)


def test_fallback_snapshot_holds_the_newest_posts_with_their_popularity(
    make_service, corpus, embedder
):
    service = loaded(make_service, corpus, embedder)
    service.ingest_interactions([event(i, f"fan-{i}", "travel-5", "like") for i in range(3)])
    newest = replace(corpus[0], post_id="newest", text="fresh post", created_at_s=NOW)
    flagged = replace(corpus[1], post_id="flagged-new", created_at_s=NOW - 1.0)
    embed_missing(
        service, [newest, replace(flagged, moderation_action="reject")], embedder.predict_batch
    )
    snapshot = service.fallback_snapshot(limit=3)
    assert list(snapshot.posts)[:2] == ["newest", "flagged-new"]
    assert len(snapshot.posts) == 3
    assert snapshot.posts["newest"] == (NOW, 0.0, False)
    assert snapshot.posts["flagged-new"][2] is True
    everything = service.fallback_snapshot(limit=1000).posts
    assert everything["travel-5"][1] > 0.0 and everything["tech-3"][1] == 0.0
    assert snapshot.freshness_weight == service.config.weights.freshness
    with pytest.raises(ValueError, match="limit=0"):
        service.fallback_snapshot(limit=0)


def test_hidden_reported_and_flagged_posts_are_left_out(make_service, corpus, embedder):
    service = loaded(make_service, corpus, embedder)
    service.ingest_interactions(
        [event(1, "u", "tech-1", "hide"), event(2, "u", "tech-2", "report")]
    )
    flagged = replace(next(p for p in corpus if p.post_id == "tech-3"), moderation_action="reject")
    assert service.ingest_posts([flagged], {}).accepted == 1
    answer = service.rank_feed("u", ["tech-1", "tech-2", "tech-3", "tech-4"], 10)
    assert ids(answer) == ["tech-4"]
    assert sorted(answer.filtered_post_ids) == ["tech-1", "tech-2", "tech-3"]
    # Another user does not see the first user's hides, but nobody sees flagged posts.
    assert ids(service.rank_feed("other", ["tech-1", "tech-3"], 10)) == ["tech-1"]
    similar = ids(service.similar_posts("tech-4", 31))
    assert "tech-3" not in similar and "tech-4" not in similar and len(similar) == 30
    # Approving it again brings it back.
    service.ingest_posts([replace(flagged, moderation_action="approve")], {})
    assert "tech-3" in ids(service.rank_feed("other", ["tech-1", "tech-3"], 10))


def test_feed_is_cached_and_dropped_when_the_profile_changes(make_service, corpus, embedder):
    service = loaded(make_service, corpus, embedder)
    candidates = [p.post_id for p in corpus]
    first = service.rank_feed("u", candidates, 5)
    assert first.cached is False and first.cold_start
    cached = service.rank_feed("u", candidates, 5)
    assert cached.cached is True and cached.posts == first.posts and cached.terms == first.terms
    service.ingest_interactions([event(i, "u", f"football-{i}", "like") for i in range(3)])
    changed = service.rank_feed("u", candidates, 5)
    assert changed.cached is False and not changed.cold_start
    assert ids(changed)[0].startswith("football-")
    # Another user's activity leaves this user's cache alone.
    service.ingest_interactions([event(9, "v", "tech-1", "like")])
    assert service.rank_feed("u", candidates, 5).cached is True
    # A post flagged after caching disappears at once (moderation changes drop cached feeds).
    top = ids(changed)[0]
    post = replace(next(p for p in corpus if p.post_id == top), moderation_action="reject")
    service.ingest_posts([post], {})
    after_flag = service.rank_feed("u", candidates, 5)
    assert after_flag.cached is False and top not in ids(after_flag)


def test_redis_stopped_mid_run_keeps_answering_and_says_so(corpus, embedder):
    with throwaway_redis() as (url, process):
        service = RecommenderService(
            RecommenderConfig(redis_retry_s=0.2), redis_url=url, redis_key_prefix="sp-outage:"
        )
        embed_missing(service, corpus, embedder.predict_batch)
        service.ingest_interactions([event(1, "u", "cooking-1", "like")])
        candidates = [p.post_id for p in corpus]
        before = service.rank_feed("u", candidates, 5)
        assert service.info().status == "ok" and not before.degraded
        process.kill()
        process.wait(timeout=10)
        during = service.rank_feed("u", candidates, 5, use_cache=False)
        assert during.degraded and "in-process mirror" in str(during.degraded_reason)
        assert ids(during) == ids(before)
        # Events keep flowing into the mirror; the profile still moves.
        service.ingest_interactions([event(2, "u", "cooking-2", "like")])
        assert service.features.get_profile("u").events == 2
        info = service.info()
        assert info.status == "degraded"
        assert info.feature_store["status"] == "degraded"
        assert info.feed_cache["kind"] == "in-process"
        assert service.interests("u", 3).topics[0].topic == "cooking"


def test_redis_comes_back_and_receives_what_changed_meanwhile(corpus, embedder):
    import redis

    with throwaway_redis() as (url, process):
        service = RecommenderService(
            RecommenderConfig(redis_retry_s=0.1), redis_url=url, redis_key_prefix="sp-back:"
        )
        embed_missing(service, corpus[:4], embedder.predict_batch)
        port = url.rsplit(":", 1)[1].split("/")[0]
        process.kill()
        process.wait(timeout=10)
        service.ingest_interactions([event(1, "u", "cooking-1", "like")])
        assert service.info().status == "degraded"
        with throwaway_redis() as (url2, _):
            # A new server on another port: point the client at it, as a restart would.
            service.features._redis.client = redis.Redis.from_url(url2, socket_timeout=0.5)
            time.sleep(0.2)
            assert service.info().status == "ok"
            client = redis.Redis.from_url(url2)
            assert client.hget("sp-back:profile:u", "events") == b"1"
            assert port != url2


def test_similar_posts_come_from_the_index_and_stay_on_topic(make_service, corpus, embedder):
    service = loaded(make_service, corpus, embedder)
    answer = service.similar_posts("cooking-0", 5)
    assert answer is not None and answer.reason is None
    neighbours = ids(answer)
    assert len(neighbours) == 5 and "cooking-0" not in neighbours
    assert sum(p.startswith("cooking-") for p in neighbours) >= 4
    scores = [p.score for p in answer.posts]
    assert scores == sorted(scores, reverse=True)
    assert service.similar_posts("missing", 5) is None
    # An edited post moves in the index.
    edited = replace(corpus[0], text="Arsenal scored three goals in the derby, what a match")
    embed_missing(service, [edited], embedder.predict_batch)
    near = ids(service.similar_posts("cooking-0", 3))
    assert all(p.startswith("football-") for p in near), near


def test_interests_come_from_tags_and_clusters(make_service, corpus, embedder):
    service = loaded(make_service, corpus, embedder)
    service.ingest_interactions(
        [event(i, "u", f"travel-{i}", "like") for i in range(4)]
        + [event(9, "u", "tech-1", "like"), event(10, "u", "football-1", "hide")]
    )
    answer = service.interests("u", 10)
    tags = {t.topic: t.weight for t in answer.topics if t.source == "tag"}
    assert tags == pytest.approx({"travel": 0.8, "tech": 0.2}, abs=1e-3)
    clusters = [t for t in answer.topics if t.source == "cluster"]
    assert clusters and "travel" in clusters[0].topic
    assert answer.interactions_used == 6 and not answer.cold_start
    assert service.interests("stranger", 5) == Interests(
        user_id="stranger", topics=(), interactions_used=0, cold_start=True
    )


def test_collaborative_term_turns_on_when_a_model_is_configured(
    make_service, corpus, embedder, tmp_path: Path
):
    service = loaded(make_service, corpus, embedder)
    CollaborativeModel(
        ["u"],
        ["tech-1", "travel-1"],
        np.array([[1.0, 0.0]], dtype=np.float32),
        np.array([[3.0, 0.0], [-3.0, 0.0]], dtype=np.float32),
        "mf-test",
    ).save(tmp_path / "mf")
    service.reconfigure(RecommenderConfig(collaborative_model_path=str(tmp_path / "mf")))
    answer = service.rank_feed("u", ["travel-1", "tech-1"], 2)
    cf = answer.terms.collaborative
    assert cf.used and cf.model_version == "mf-test" and not answer.cold_start
    assert ids(answer)[0] == "tech-1"
    service.reconfigure(RecommenderConfig(collaborative_model_path=str(tmp_path / "none")))
    broken = service.rank_feed("u", ["travel-1", "tech-1"], 2, use_cache=False)
    assert not broken.terms.collaborative.used
    assert "factors.npz" in str(broken.terms.collaborative.reason)


def test_in_process_store_without_redis_url(corpus, embedder):
    service = RecommenderService(RecommenderConfig())
    embed_missing(service, corpus[:8], embedder.predict_batch)
    info = service.info()
    assert info.feature_store["kind"] == "in-process" and info.status == "ok"
    assert "mongomock" in str(info.document_store["kind"])
    assert ids(service.rank_feed("u", ["cooking-1"], 1)) == ["cooking-1"]
    # /health shows the same document the node always answered.
    assert info.as_json() == {
        "status": "ok",
        "document_store": info.document_store,
        "feature_store": info.feature_store,
        "feed_cache": {"kind": "in-process", "ttl_s": service.config.cache_ttl_s},
        "vector_index": {"kind": "hnswlib", "posts": 8},
        "collaborative_model": {"loaded": False, "version": None, "error": None},
        "blend": {"source": "hand-set", "version": "hand-set", "error": None},
        "impressions": {
            "enabled": True,
            "logged": 0,
            "max_impressions": 200_000,
            "dropped_oldest": 0,
            "queued": 0,
            "dropped_unwritten": 0,
            "errors": 0,
        },
    }
    assert asdict(service.rank_feed("u", ["cooking-1"], 1))["terms"]["popularity"] == {
        "used": True,
        "weight": service.config.weights.popularity,
    }
