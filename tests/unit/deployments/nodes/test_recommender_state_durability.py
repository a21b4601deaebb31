"""State that must survive: faults between storing and applying events, restarts of the
recommender state with Redis kept or emptied, and a Redis outage under a stream of events.

No Ray and no text model: posts carry random unit vectors. A restart is a new
`RecommenderService` on the same document database (mongomock shared between the two) and
either the same Redis key prefix (Redis kept) or a fresh one (Redis flushed). The outage
pauses a private redis-server (SIGSTOP: its data stays) and resumes it.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import mongomock
import numpy as np
import pytest

import deployments.nodes.recommender_state as recommender_state
from configs.recommender import RecommenderConfig
from deployments.nodes.recommender_state import RecommenderService
from models.embeddings import EMBEDDING_DIM, text_hash
from models.recommender import Interaction, NewPost
from storage.documents import DocumentStoreInfo
from tests.fixtures.redis_server import shared_redis_or_skip, throwaway_redis, unique_prefix

NOW = time.time()
POSTS = [
    NewPost(
        post_id=f"p{i}",
        author_id="a",
        text=f"post number {i} about topic {i % 3}",
        tags=(f"t{i % 3}",),
        created_at_s=NOW - 3600.0,
    )
    for i in range(12)
]
KINDS = ["like", "view", "comment", "share", "hide", "like", "report"]


def _vectors() -> dict[str, list[float]]:
    rng = np.random.default_rng(3)
    out = {}
    for post in POSTS:
        vector = rng.normal(size=EMBEDDING_DIM).astype(np.float32)
        out[text_hash(post.text)] = (vector / np.linalg.norm(vector)).tolist()
    return out


VECTORS = _vectors()


def events(start: int, count: int, users: int = 3) -> list[Interaction]:
    """`count` interactions with ids from `start`, spread over users, posts and kinds."""
    rng = random.Random(start)
    return [
        Interaction(
            f"e{i}",
            f"u{i % users}",
            f"p{rng.randrange(len(POSTS))}",
            KINDS[rng.randrange(len(KINDS))],
            NOW - 1000.0 + i,
        )
        for i in range(start, start + count)
    ]


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., RecommenderService]]:
    """Services on one shared document database; `make(prefix=...)` picks the Redis prefix."""
    url = shared_redis_or_skip()
    database = mongomock.MongoClient(tz_aware=True)["durability"]
    info = DocumentStoreInfo("mongomock (shared by the test's services)", True)
    monkeypatch.setattr(recommender_state, "open_database", lambda _url: (database, info))
    made: list[RecommenderService] = []

    def make(prefix: str, redis_url: str | None = None, **config: Any) -> RecommenderService:
        service = RecommenderService(
            RecommenderConfig(**config),
            redis_url=url if redis_url is None else redis_url,
            redis_key_prefix=prefix,
        )
        made.append(service)
        return service

    yield make
    for service in made:
        service.features.clear()


def reference(events_in_order: list[list[Interaction]]) -> RecommenderService:
    """The same batches on a fresh in-process service with nothing going wrong."""
    database = mongomock.MongoClient(tz_aware=True)["reference"]
    original = recommender_state.open_database
    recommender_state.open_database = lambda _url: (database, DocumentStoreInfo("ref", False))
    try:
        service = RecommenderService(RecommenderConfig())
    finally:
        recommender_state.open_database = original
    service.ingest_posts(POSTS, VECTORS)
    for batch in events_in_order:
        service.ingest_interactions(batch)
    return service


def assert_same_state(actual: RecommenderService, expected: RecommenderService) -> None:
    """Profiles, popularity and hidden sets of every user and post are equal."""
    ids = [p.post_id for p in POSTS]
    np.testing.assert_allclose(
        actual.features.get_popularity(ids), expected.features.get_popularity(ids), rtol=1e-6
    )
    for user in ("u0", "u1", "u2"):
        got, want = actual.features.get_profile(user), expected.features.get_profile(user)
        assert (got is None) == (want is None), user
        if got is not None and want is not None:
            assert got.events == want.events, user
            np.testing.assert_allclose(got.vector, want.vector, rtol=1e-4, atol=1e-6)
            assert got.weight == pytest.approx(want.weight, rel=1e-6)
        assert actual.features.get_hidden(user) == expected.features.get_hidden(user), user


def fail_once(service: RecommenderService, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next `_apply` fails: the events are stored, nothing is applied."""
    original = service._apply

    def failing(batch: Any) -> list[str]:
        monkeypatch.setattr(service, "_apply", original)
        raise ConnectionError("injected: crashed after storing, before applying")

    monkeypatch.setattr(service, "_apply", failing)


def test_fault_between_storing_and_applying_then_a_retry_applies_once(stores, monkeypatch):
    service = stores(unique_prefix())
    service.ingest_posts(POSTS, VECTORS)
    first, second = events(0, 20), events(20, 20)
    service.ingest_interactions(first)
    fail_once(service, monkeypatch)
    with pytest.raises(ConnectionError):
        service.ingest_interactions(second)
    assert service.interactions.count() == 40
    assert len(service.interactions.unapplied()) == 20
    # The client retries the batch: what the failure left undone is applied, once.
    retried = service.ingest_interactions(second)
    assert retried.accepted == 20 and retried.duplicates == 0
    assert service.interactions.unapplied() == []
    again = service.ingest_interactions(second)
    assert again.accepted == 0 and again.duplicates == 20
    assert_same_state(service, reference([first, second]))


def test_restart_applies_what_was_stored_but_not_applied(stores, monkeypatch):
    prefix = unique_prefix()
    service = stores(prefix)
    service.ingest_posts(POSTS, VECTORS)
    first, second = events(0, 20), events(20, 20)
    service.ingest_interactions(first)
    fail_once(service, monkeypatch)
    with pytest.raises(ConnectionError):
        service.ingest_interactions(second)
    restarted = stores(prefix)  # Redis kept: only the unapplied events are applied
    assert restarted.interactions.unapplied() == []
    assert_same_state(restarted, reference([first, second]))
    assert restarted.ingest_interactions(second).duplicates == 20


def test_restart_with_redis_kept_keeps_the_state(stores):
    prefix = unique_prefix()
    service = stores(prefix)
    service.ingest_posts(POSTS, VECTORS)
    batches = [events(0, 25), events(25, 25)]
    for batch in batches:
        service.ingest_interactions(batch)
    restarted = stores(prefix)
    assert_same_state(restarted, reference(batches))  # nothing replayed twice


@pytest.mark.parametrize("redis", ["flushed", "none"])
def test_restart_with_redis_emptied_rebuilds_from_the_stored_events(stores, redis):
    service = stores(unique_prefix())
    service.ingest_posts(POSTS, VECTORS)
    batches = [events(0, 25), events(25, 25)]
    for batch in batches:
        service.ingest_interactions(batch)
    hidden = service.features.get_hidden("u1")
    assert hidden
    # A fresh prefix is a flushed Redis to the service; "none" runs without Redis.
    restarted = stores(unique_prefix(), redis_url="" if redis == "none" else None)
    assert_same_state(restarted, reference(batches))
    # Vectors came back from the post documents: the index and similar posts work.
    assert len(restarted.index) == len(POSTS)
    feed = restarted.rank_feed("u1", [p.post_id for p in POSTS], 12, use_cache=False)
    assert hidden <= set(feed.filtered_post_ids)
    assert not hidden & {item.post_id for item in feed.posts}


# How long Redis is stopped (SIGSTOP) while events arrive.
OUTAGE_S = 20.0


def test_redis_outage_under_events_ends_with_the_profiles_of_a_run_without_it(monkeypatch):
    database = mongomock.MongoClient(tz_aware=True)["outage"]
    info = DocumentStoreInfo("mongomock", True)
    monkeypatch.setattr(recommender_state, "open_database", lambda _url: (database, info))
    batches = [events(i * 10, 10) for i in range(8)]
    with throwaway_redis() as (url, process):
        config = RecommenderConfig(redis_retry_s=0.2)
        service = RecommenderService(config, redis_url=url, redis_key_prefix="sp-out:")
        service.ingest_posts(POSTS, VECTORS)
        for batch in batches[:3]:
            service.ingest_interactions(batch)
        # A restart with Redis kept: this replica's mirror holds no profile, only Redis does
        # (the case where writing back the mirror overwrote full profiles).
        service = RecommenderService(config, redis_url=url, redis_key_prefix="sp-out:")
        os.kill(process.pid, signal.SIGSTOP)
        try:
            # The outage: Redis away for 20 s while events keep arriving.
            outage_end_s = time.monotonic() + OUTAGE_S
            for batch in batches[3:6]:
                service.ingest_interactions(batch)
                assert service.info().status == "degraded"
                time.sleep(max(0.0, min(OUTAGE_S / 3, outage_end_s - time.monotonic())))
            assert time.monotonic() >= outage_end_s - 0.5, "the outage lasted its 20 s"
        finally:
            os.kill(process.pid, signal.SIGCONT)
        time.sleep(0.3)  # past redis_retry_s: the next call pings and writes back
        assert service.features.redis_up()
        for batch in batches[6:]:
            service.ingest_interactions(batch)
        assert service.info().status == "ok"
        # What Redis holds: a service started now reads it back.
        after = RecommenderService(config, redis_url=url, redis_key_prefix="sp-out:")
        assert_same_state(after, reference(batches))
        assert_same_state(service, reference(batches))
