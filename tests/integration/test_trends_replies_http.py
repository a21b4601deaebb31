"""Trends, topic sentiment and smart replies over HTTP, under serve.run.

One deploy for the module: Embedder + Recommender (posts arrive through the events route),
Sentiment (labels), Trends (period of an hour: the tests trigger a run through the node's
handle instead of waiting) and SmartReply (retrieval, real MiniLM).

The stream: a steady big topic (football) with as many posts in the previous 24 h as in the
last 24 h, and a topic that surges in the last 3 hours (the solar eclipse), with clearly
positive and clearly negative posts on it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from deployments.app import build_graph
from tests.integration.conftest import TEST_API_KEY, deploy, embedded_args, health_detail, undeploy

pytestmark = pytest.mark.integration

APP = "socialplay"
NOW = datetime.now(UTC)
SMALL = {"ray_actor_options": {"num_cpus": 0.1}}

# Eclipse posts: clearly positive or clearly negative, varied like real posts (identical
# repeated texts would form clusters of their own).
POSITIVE_WORDS = ["amazing", "beautiful", "wonderful", "awesome", "great", "lovely"]
NEGATIVE_WORDS = ["terrible", "awful", "horrible", "disappointing", "sad", "bad"]
PLACES = ["this afternoon", "over the city", "today", "from the beach", "in the park"]
FOOTBALL = [
    "football match tonight {team} against {other} at the stadium",
    "watching the football game {team} scored a late goal against {other}",
    "football league table after {team} beat {other} on the weekend",
]
TEAMS = ["arsenal", "chelsea", "liverpool", "everton", "fulham", "brentford"]
FILLER = [
    "baking sourdough bread this morning with {x}",
    "new phone camera review {x} battery life",
    "garden tomatoes growing fast {x}",
    "reading a novel about {x} on the train",
]
FILLER_WORDS = ["rye", "lenses", "basil", "pirates", "yeast", "zoom", "compost", "dragons"]


def _post(post_id: str, text: str, hours_ago: float, **extra: Any) -> dict[str, Any]:
    return {
        "post_id": post_id,
        "author_id": f"author-{len(post_id) % 7}",
        "text": text,
        "created_at": (NOW - timedelta(hours=hours_ago)).isoformat(),
        **extra,
    }


def stream() -> list[dict[str, Any]]:
    """Steady football in both windows, a surging eclipse in the last hours, some filler."""
    rng = random.Random(5)
    posts: list[dict[str, Any]] = []
    for window, (start_h, end_h) in enumerate([(0.5, 23.5), (24.5, 47.5)]):
        for i in range(40):
            team, other = rng.sample(TEAMS, 2)
            text = rng.choice(FOOTBALL).format(team=team, other=other)
            posts.append(_post(f"fb-{window}-{i}", text, rng.uniform(start_h, end_h)))
        for i in range(12):
            text = rng.choice(FILLER).format(x=rng.choice(FILLER_WORDS))
            posts.append(_post(f"fill-{window}-{i}", text, rng.uniform(start_h, end_h)))
    # The surge: 30 posts in the last 3 hours (18 positive, 12 negative) against 1 before.
    for i in range(30):
        positive = i % 5 < 3
        words = POSITIVE_WORDS if positive else NEGATIVE_WORDS
        feeling = "I love it" if positive else "I hate the clouds"
        text = (
            f"the solar eclipse {rng.choice(PLACES)} was {rng.choice(words)} and "
            f"{rng.choice(words)}, {feeling}"
        )
        posts.append(_post(f"ec-{i}", text, rng.uniform(0.1, 3.0)))
    posts.append(_post("ec-old", "first news about a solar eclipse next week", 30.0))
    # Rejected by moderation: never counted, whatever it says.
    posts.append(_post("ec-rejected", "solar eclipse is amazing", 1.0, moderation_action="reject"))
    return posts


@pytest.fixture(scope="module")
def app(base_url: str) -> Iterator[None]:
    graph = build_graph(
        embedded_args(
            recommender={"enabled": True, "redis_key_prefix": "sp-tr:"},
            trends={"enabled": True},
            replies={"enabled": True},
        ),
        {
            "Ingress": SMALL,
            "TextModeration": SMALL,
            "Sentiment": SMALL,
            "Embedder": SMALL,
            "Recommender": SMALL,
            "Trends": {**SMALL, "user_config": {"period_s": 3600, "on_demand_cache_s": 600}},
            "SmartReply": SMALL,
        },
    )
    deploy(graph, base_url)
    yield
    undeploy()


@pytest.fixture(scope="module")
def sent(app: None, base_url: str) -> list[dict[str, Any]]:
    from ray import serve

    posts = stream()
    with httpx.Client(base_url=base_url, headers={"X-API-Key": TEST_API_KEY}, timeout=120) as c:
        answer = c.post("/api/v1/events/posts", json={"posts": posts})
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == len(posts)
    # Run the background computation now instead of waiting a period (not an HTTP route).
    report = (
        serve.get_deployment_handle("Trends", app_name=APP).refresh.remote().result(timeout_s=120)
    )
    assert report.report.window_post_count > 0
    return posts


def test_the_surging_topic_trends_and_the_steady_big_one_does_not(client, sent) -> None:
    answer = client.get("/api/v1/trends", params={"window_hours": 24, "limit": 10})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["source"] == "background" and body["stale"] is False
    assert body["window_hours"] == 24
    trends = body["trends"]
    assert trends, body
    top = trends[0]
    assert "eclipse" in top["keywords"] or "solar" in top["keywords"], trends
    assert top["post_count"] == 30 and top["previous_count"] == 1
    assert all(p.startswith("ec-") for p in top["sample_post_ids"])
    assert not any("football" in t["keywords"] for t in trends), trends
    # Sentiment shares come from the Sentiment node's labels, not constants.
    assert top["labelled_count"] == top["post_count"]
    assert top["sentiment"]["positive"] > 0 and top["sentiment"]["negative"] > 0
    assert sum(top["sentiment"].values()) == pytest.approx(1.0)


def test_another_window_is_computed_on_demand_then_cached(client, sent) -> None:
    first = client.get("/api/v1/trends", params={"window_hours": 12, "limit": 3}).json()
    assert first["source"] == "on_demand" and first["window_hours"] == 12
    assert len(first["trends"]) <= 3
    again = client.get("/api/v1/trends", params={"window_hours": 12, "limit": 3}).json()
    assert again["source"] == "cache" and again["computed_at"] == first["computed_at"]


def test_topic_sentiment_counts_the_sentiment_nodes_labels(client, sent) -> None:
    eclipse_now = [
        p["text"]
        for p in sent
        if "eclipse" in p["text"]
        and p.get("moderation_action") is None
        and p["post_id"] != "ec-old"
    ]
    labels = client.post("/api/v1/sentiment/batch", json={"texts": eclipse_now}).json()["results"]
    expected = {name: sum(r["label"] == name for r in labels) for name in ("positive", "negative")}
    assert expected["positive"] >= 15 and expected["negative"] >= 10, labels

    body = client.get("/api/v1/sentiment/topics/eclipse", params={"window_hours": 24}).json()
    assert body["kind"] == "keyword" and body["topic"] == ["eclipse"]
    assert body["total"] == len(eclipse_now) == body["labelled"]
    assert body["counts"]["positive"] == expected["positive"]
    assert body["counts"]["negative"] == expected["negative"]
    assert sum(body["percentages"].values()) == pytest.approx(100.0)
    # 48 h reaches the older post too.
    wider = client.get("/api/v1/sentiment/topics/eclipse", params={"window_hours": 48}).json()
    assert wider["total"] == len(eclipse_now) + 1


def test_topic_sentiment_by_trend_id_uses_its_keywords(client, sent) -> None:
    top = client.get("/api/v1/trends", params={"window_hours": 24, "limit": 1}).json()["trends"][0]
    body = client.get(f"/api/v1/sentiment/topics/{top['trend_id']}").json()
    assert body["kind"] == "trend" and body["trend_id"] == top["trend_id"]
    assert body["topic"] == top["keywords"]
    assert body["total"] >= top["post_count"]


@pytest.mark.parametrize("hours", ["0", "10000", "-3"])
def test_bad_windows_name_window_hours(client, sent, hours: str) -> None:
    for path in ("/api/v1/trends", "/api/v1/sentiment/topics/eclipse"):
        answer = client.get(path, params={"window_hours": hours})
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["field"] == "window_hours"
        assert "1 to 168" in answer.json()["error"]["message"]


def test_bad_trend_limit_names_limit(client, sent) -> None:
    answer = client.get("/api/v1/trends", params={"limit": 0})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "limit"


# ---- smart replies ------------------------------------------------------------------------
def suggest(client: httpx.Client, message: str, **extra: Any) -> dict[str, Any]:
    answer = client.post("/api/v1/replies/suggest", json={"message": message, **extra})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_thanks_gets_diverse_replies(client, app) -> None:
    body = suggest(client, "Thank you so much for your help yesterday!", limit=3)
    assert body["reason"] is None and body["moderation_action"] == "approve"
    suggestions = body["suggestions"]
    assert 1 <= len(suggestions) <= 3
    assert suggestions[0]["intent"] == "welcome"
    # Diversity: one reply per intent, never three ways of saying "you're welcome".
    intents = [s["intent"] for s in suggestions]
    assert len(set(intents)) == len(intents)
    assert body["model"]["name"].startswith("smart-reply/")


def test_yes_no_question_gets_a_yes_and_a_no(client, app) -> None:
    body = suggest(client, "Are you coming to the party tonight?", limit=3)
    assert body["yes_no_question"] is True
    assert {"yes", "no"} <= {s["intent"] for s in body["suggestions"]}


def test_flagged_message_gets_no_suggestions_and_says_why(client, app) -> None:
    body = suggest(client, "thanks, you stupid idiot moron", limit=3)
    assert body["suggestions"] == []
    assert body["reason"] == "flagged_by_moderation"
    assert body["moderation_action"] in {"flag_for_review", "reject"}


def test_too_long_for_a_reply_is_not_an_error(client, app) -> None:
    body = suggest(client, "Thanks for the update on the project. " * 20, limit=3)
    assert body["suggestions"] == [] and body["reason"] == "message_too_long"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"message": "", "limit": 3}, "message"),
        ({"message": "   ", "limit": 3}, "message"),
        ({"message": "thanks!", "limit": 0}, "limit"),
        ({"message": "thanks!", "limit": 4}, "limit"),
        ({"message": "x" * 10_001, "limit": 3}, "message"),
        ({"message": "thanks!", "context": [""], "limit": 3}, "context[0]"),
    ],
)
def test_bad_reply_requests_name_the_field(client, app, payload, field) -> None:
    answer = client.post("/api/v1/replies/suggest", json=payload)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


def test_health_lists_the_new_nodes(base_url, sent) -> None:
    nodes = health_detail(base_url)["nodes"]
    assert nodes["trends"]["status"] == "ok" and nodes["trends"]["runs"] >= 1
    assert nodes["trends"]["labelled_posts"] > 0
    assert nodes["replies"]["status"] == "ok"
