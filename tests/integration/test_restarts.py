"""A restart of the Recommender under Serve: with Redis kept the state survives; with Redis
flushed but the events kept it is rebuilt from the stored events.

The Recommender keeps its derived state (profiles, popularity, hidden posts, post features,
vectors) on a private redis-server started here, and its record (posts, interactions) in a
document store that outlives the replicas: `tests.fixtures.mongo_wire`, mongomock in this
process behind MongoDB's wire protocol (no MongoDB server is installed here or in CI; the
embedded store lives in the replica and dies with it). The replicas reach both through
``REDIS_URL`` and ``MONGODB_URL``, so the product runs its real pymongo and Redis paths.

One deploy in this module records the state; each restart kills the Recommender's replica
(``ray.kill``, as a crash or a node loss would) and lets Serve start a new one, which loads its
state in ``__init__`` exactly as a redeploy's replica does, then compares with the record,
exactly: the derived keys in Redis, the feed order and what it filters, and the interests.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from deployments.app import build_graph
from pipelines.synthetic_social import post_text
from tests.fixtures.mongo_wire import mongo_wire_server
from tests.fixtures.redis_server import throwaway_redis
from tests.integration.conftest import TEST_API_KEY, deploy, embedded_args, health_detail, undeploy
from tests.integration.replicas import kill_and_wait_for_replacement

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
SMALL = {"ray_actor_options": {"num_cpus": 0.1}}
APP_NAME = "socialplay"
# Past this a restart is a failure (Serve notices a death at its next health check).
RESTART_GIVE_UP_S = 90.0
PREFIX = "sp-restart:"
READER = "reader"
TOPICS = ("cooking", "football", "tech")
# Every candidate of the feeds compared below: the hidden and the reported one among them.
CANDIDATES = [f"{topic}-{i}" for topic in TOPICS for i in range(4)]
HIDDEN, REPORTED = "cooking-3", "tech-2"


def _graph(redis_url: str, mongodb_url: str) -> Any:
    stores = {"REDIS_URL": redis_url, "MONGODB_URL": mongodb_url}
    return build_graph(
        embedded_args(recommender={"enabled": True, "redis_key_prefix": PREFIX}),
        {
            "Ingress": SMALL,
            "TextModeration": SMALL,
            "Sentiment": SMALL,
            "Embedder": SMALL,
            "Recommender": {
                "ray_actor_options": {"num_cpus": 0.1, "runtime_env": {"env_vars": stores}},
                "user_config": {"cache_ttl_s": 60},
            },
        },
    )


def _interactions() -> list[dict[str, Any]]:
    """Two users' events, one second apart and oldest first (the order a replay applies)."""
    plan = [
        *[(READER, f"cooking-{i}", "like") for i in range(3)],
        (READER, "cooking-1", "share"),
        (READER, "football-0", "like"),
        (READER, HIDDEN, "hide"),
        (READER, REPORTED, "report"),
        *[("fan", f"football-{i}", "share") for i in range(4)],
        ("fan", "tech-0", "like"),
    ]
    start = NOW - timedelta(minutes=10)
    return [
        {
            "event_id": f"restart-{i}",
            "user_id": user,
            "post_id": post,
            "type": kind,
            "timestamp": (start + timedelta(seconds=i)).isoformat(),
        }
        for i, (user, post, kind) in enumerate(plan)
    ]


def _derived_state(client: redis.Redis) -> dict[str, object]:
    """Every key the Recommender derives from events and posts, with its value; the feed
    cache is left out (keyed by the replica's boot id, so never carried over)."""
    state: dict[str, object] = {}
    for raw in client.scan_iter(match=PREFIX + "*", count=1000):
        key = raw.decode()
        kind = client.type(key).decode()
        if key.startswith((PREFIX + "feed:", PREFIX + "feedkeys:")):
            continue
        if kind == "hash":
            state[key] = client.hgetall(key)
        elif kind == "set":
            state[key] = client.smembers(key)
        elif kind == "string":
            state[key] = client.get(key)
        else:
            state[key] = kind
    return state


def _answers(http: httpx.Client) -> dict[str, object]:
    """What the API answers about the two users, less scores (they age with the clock)."""
    feed = http.post(
        "/api/v1/recommendations/feed",
        json={"user_id": READER, "candidate_post_ids": CANDIDATES, "limit": 20},
    )
    assert feed.status_code == 200, feed.text
    body = feed.json()
    assert body["degraded"] is False, body
    answers: dict[str, object] = {
        "feed": [p["post_id"] for p in body["posts"]],
        "filtered": sorted(body["filtered_post_ids"]),
        "cold_start": body["cold_start"],
    }
    for user in (READER, "fan"):
        interests = http.get(f"/api/v1/users/{user}/interests", params={"limit": 5})
        assert interests.status_code == 200, interests.text
        answers[f"interests:{user}"] = interests.json()
    return answers


@pytest.fixture(scope="module")
def stores(base_url: str) -> Iterator[tuple[str, str, redis.Redis]]:
    """The private Redis and the document store; the graph deployed on them, torn down last."""
    with throwaway_redis() as (redis_url, _process), mongo_wire_server() as mongodb_url:
        client = redis.Redis.from_url(redis_url)
        try:
            yield redis_url, mongodb_url, client
        finally:
            undeploy()
            client.close()


@pytest.fixture(scope="module")
def before(
    stores: tuple[str, str, redis.Redis], base_url: str
) -> tuple[dict[str, object], dict[str, object]]:
    """Deploy, send posts and events, and record the derived state and the answers."""
    redis_url, mongodb_url, client = stores
    deploy(_graph(redis_url, mongodb_url), base_url)
    rng = random.Random(5)
    posts = [
        {
            "post_id": post_id,
            "author_id": "author-3",
            "text": post_text(post_id.split("-")[0], rng),
            "tags": [f"#{post_id.split('-')[0]}"],
            "created_at": (NOW - timedelta(hours=1)).isoformat(),
        }
        for post_id in CANDIDATES
    ]
    with httpx.Client(base_url=base_url, headers={"X-API-Key": TEST_API_KEY}, timeout=60) as http:
        stored = http.post("/api/v1/events/posts", json={"posts": posts})
        assert stored.status_code == 200 and stored.json()["accepted"] == len(posts), stored.text
        events = _interactions()
        sent = http.post("/api/v1/events/interactions", json={"interactions": events})
        assert sent.json() == {
            "accepted": len(events),
            "duplicates": 0,
            "unknown_post_ids": [],
            "unknown_post_events": 0,
        }
        return _derived_state(client), _answers(http)


def _restart_recommender(base_url: str) -> None:
    """Kill the Recommender's replica and wait until its replacement serves."""
    replaced = kill_and_wait_for_replacement(APP_NAME, "Recommender", RESTART_GIVE_UP_S)
    assert replaced.running_at_s is not None, f"no new Recommender within {RESTART_GIVE_UP_S} s"
    deadline = time.monotonic() + RESTART_GIVE_UP_S
    while health_detail(base_url)["nodes"]["recommender"].get("status") != "ok":
        assert time.monotonic() < deadline, "the new Recommender never reported ok in /health"
        time.sleep(0.2)


def test_the_recorded_state_is_worth_comparing(before, base_url) -> None:
    state, answers = before
    assert answers["filtered"] == sorted([HIDDEN, REPORTED])
    feed = answers["feed"]
    assert isinstance(feed, list) and HIDDEN not in feed and REPORTED not in feed
    assert len(feed) == len(CANDIDATES) - 2
    reader = answers[f"interests:{READER}"]
    assert isinstance(reader, dict) and reader["interactions_used"] == 7
    assert reader["topics"][0]["topic"] == "cooking"
    assert state[f"{PREFIX}hidden:{READER}"] == {HIDDEN.encode(), REPORTED.encode()}
    assert f"{PREFIX}pop" in state and f"{PREFIX}profile:fan" in state
    documents = health_detail(base_url)["nodes"]["recommender"]["document_store"]
    assert documents == {"kind": "mongodb", "persisted": True}


def test_a_restart_with_redis_kept_keeps_the_state(before, stores, base_url, client) -> None:
    state, answers = before
    _restart_recommender(base_url)
    assert _answers(client) == answers
    assert _derived_state(stores[2]) == state


def test_a_restart_on_a_flushed_redis_rebuilds_the_state_from_the_events(
    before, stores, base_url, client
) -> None:
    state, answers = before
    redis_client = stores[2]
    # The module's private server only (its own port), never the shared one.
    redis_client.flushall()
    assert _derived_state(redis_client) == {}
    _restart_recommender(base_url)
    assert _derived_state(redis_client) == state
    assert _answers(client) == answers
