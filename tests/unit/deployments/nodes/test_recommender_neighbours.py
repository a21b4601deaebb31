"""The co-occurrence (item-to-item) term: on from the first events, stored with the feature
store, reloaded from Redis after a restart (issue 20). No Ray; posts without text (no
embedding needed); the Redis test uses the shared server under a private prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from configs.recommender import RecommenderConfig
from deployments.nodes.recommender_state import RecommenderService
from models.recommender import Interaction, NewPost
from tests.fixtures.redis_server import shared_redis_or_skip, unique_prefix

NOW = 1_767_225_600.0


def _posts(service: RecommenderService) -> None:
    service.ingest_posts(
        [NewPost(post_id=f"p{i}", author_id="a", created_at_s=NOW - 3600) for i in range(1, 6)]
    )


def _events(service: RecommenderService) -> None:
    events = []
    for user in ("a", "b", "c"):  # people who liked p1 also liked p2
        events += [(user, "p1"), (user, "p2")]
    events += [(f"fan{i}", "p3") for i in range(6)]  # p3 is the popular one
    events += [("d", "p1")]
    service.ingest_interactions(
        [Interaction(f"e{i}", u, p, "like", NOW) for i, (u, p) in enumerate(events)]
    )


def _feed(service: RecommenderService, user: str) -> list[str]:
    answer = service.rank_feed(user, ["p2", "p3", "p4"], 3, now_s=NOW, use_cache=False)
    return [item.post_id for item in answer.posts]


def test_people_who_liked_the_same_post_shape_the_feed_from_the_first_events() -> None:
    service = RecommenderService(RecommenderConfig(mmr_lambda=1.0))
    _posts(service)
    _events(service)
    answer = service.rank_feed("d", ["p2", "p3", "p4"], 3, now_s=NOW, use_cache=False)
    assert answer.terms.neighbour.used and answer.terms.neighbour.history == 1
    assert not answer.cold_start
    assert _feed(service, "d")[0] == "p2"
    # Without the term, popularity puts p3 first: the term is what moved p2 up.
    plain = RecommenderService(RecommenderConfig(mmr_lambda=1.0, weights={"neighbour": 0.0}))
    _posts(plain)
    _events(plain)
    assert _feed(plain, "d")[0] == "p3"
    off = plain.rank_feed("d", ["p2"], 1, now_s=NOW, use_cache=False).terms.neighbour
    assert not off.used and "weights.neighbour is 0" in str(off.reason)


def test_a_new_user_stays_cold_start_with_the_term_off_and_says_why() -> None:
    service = RecommenderService(RecommenderConfig())
    _posts(service)
    _events(service)
    answer = service.rank_feed("newcomer", ["p2", "p3"], 2, now_s=NOW, use_cache=False)
    assert answer.cold_start
    assert not answer.terms.neighbour.used
    assert "no positive reactions" in str(answer.terms.neighbour.reason)
    # Popularity and freshness rank a cold-start feed, as before.
    assert [p.post_id for p in answer.posts] == ["p3", "p2"]


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    url, prefix = shared_redis_or_skip(), unique_prefix()
    yield url, prefix
    RecommenderService(RecommenderConfig(), redis_url=url, redis_key_prefix=prefix).features.clear()


def test_cooccurrence_lives_in_redis_and_comes_back_after_a_restart(
    redis_prefix: tuple[str, str],
) -> None:
    url, prefix = redis_prefix
    first = RecommenderService(RecommenderConfig(), redis_url=url, redis_key_prefix=prefix)
    _posts(first)
    _events(first)
    before = first.features.neighbour_scores("d", ["p2", "p3", "p4"])
    # A new replica on the same Redis (the document store is in process: posts re-sent, the
    # events are not): its co-occurrence comes from Redis alone.
    second = RecommenderService(RecommenderConfig(), redis_url=url, redis_key_prefix=prefix)
    _posts(second)
    after = second.features.neighbour_scores("d", ["p2", "p3", "p4"])
    assert before is not None and after is not None
    assert list(after) == list(before)
    assert second.features.neighbour_history("d") == ["p1"]
