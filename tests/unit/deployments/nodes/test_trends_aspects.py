"""Topic sentiment with the aspect node (no Ray): a post that praises one thing and pans
another counts positive for the one and negative for the other; without the node, or when
it fails, posts count by their whole-post label."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from deployments.nodes.trends import Trends
from models.answers import Answer, ModelRef
from models.aspect_types import AspectAnswer, AspectRequest, WindowVaderAspects
from models.recommender import RecentPost, RecentPosts
from models.sentiment import PolarityScores, SentimentScores
from tests.unit.deployments.ingress.fakes import FakeNode

MIXED = "the food was great but the service was awful"
POSTS = (
    MIXED,
    "sadly the food was awful today",
    "loved the service, friendly people",
)
MODEL = ModelRef("aspect", "1", "cpu")


def _recommender() -> FakeNode:
    now_s = time.time()
    rows = tuple(
        RecentPost(f"p{i}", text, f"h{i}", now_s - 60 * (i + 1), "approve")
        for i, text in enumerate(POSTS)
    )
    return FakeNode("Recommender", recent_posts=lambda since, limit: RecentPosts(rows, False))


def _sentiment() -> FakeNode:
    """The whole-post model: calls the mixed post positive (its first clause)."""

    def label(texts: list[str]) -> list[Answer[SentimentScores]]:
        labels = ["negative" if "awful today" in t else "positive" for t in texts]
        scores = PolarityScores(0.5, 0.5, 0.0)
        return [Answer(SentimentScores(x, scores, 0.5), MODEL) for x in labels]

    return FakeNode("Sentiment", predict_many=label)


def _aspects(model: Any) -> FakeNode:
    def answer(requests: list[AspectRequest]) -> list[Answer[AspectAnswer]]:
        return [Answer(a, MODEL) for a in model.predict_batch(requests)]

    return FakeNode("AspectSentiment", predict_many=answer)


Counts = tuple[dict[str, int], int]


def _ask(nodes: tuple[FakeNode, ...], *topics: str) -> list[Counts]:
    """Topic sentiment of each topic from one Trends node, all inside one event loop (the
    node's background loop task is bound to it and cancelled at the end)."""

    async def scenario() -> list[Counts]:
        node = Trends.func_or_class(*nodes)
        try:
            answers = [await node.topic_sentiment(topic, 24.0) for topic in topics]
        finally:
            if node._loop_task is not None:
                node._loop_task.cancel()
        return [(a.sentiment.counts, a.sentiment.aspect_labelled) for a in answers]

    return asyncio.run(scenario())


def test_each_topic_of_a_mixed_post_gets_its_own_label() -> None:
    # The VADER window model is enough to show the wiring; the shipped model below.
    nodes = (_recommender(), _sentiment(), _aspects(WindowVaderAspects.load()))
    (food, food_by_aspect), (service, _) = _ask(nodes, "food", "service")
    assert food == {"positive": 1, "negative": 1, "neutral": 0} and food_by_aspect == 2
    assert service == {"positive": 1, "negative": 1, "neutral": 0}


def test_without_the_aspect_node_or_when_it_fails_posts_count_by_their_own_label() -> None:
    by_post = ({"positive": 2, "negative": 0, "neutral": 0}, 0)
    assert _ask((_recommender(), _sentiment()), "service") == [by_post]
    failing = FakeNode("AspectSentiment", predict_many=RuntimeError("down"))
    assert _ask((_recommender(), _sentiment(), failing), "service") == [by_post]


def test_topic_labels_are_kept_per_post_text_and_topic() -> None:
    aspects = _aspects(WindowVaderAspects.load())
    _ask((_recommender(), _sentiment(), aspects), "food", "food", "service")
    sent = [len(call[0]) for call in aspects.predict_many.calls]
    assert sent == [2, 2], "the second 'food' request reused the labels"


@pytest.mark.skipif(
    not (Path(__file__).parents[4] / "models/shipped/aspect-sentiment/MANIFEST").is_file(),
    reason="no shipped aspect artifact",
)
def test_with_the_shipped_model_food_is_positive_and_service_negative() -> None:
    from models.aspects import load_shipped_aspects

    nodes = (_recommender(), _sentiment(), _aspects(load_shipped_aspects("cpu")))
    one_each = ({"positive": 1, "negative": 1, "neutral": 0}, 2)
    assert _ask(nodes, "food", "service") == [one_each, one_each]
