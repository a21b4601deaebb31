"""The Trends node's background snapshot knows when posts arrived after it (issue 20).

The real Recommender and Trends node classes run in process (in-process stores, a fake
embedder and sentiment node): no Ray.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from deployments.nodes.recommender import Recommender
from deployments.nodes.trends import Trends
from models.embeddings import EMBEDDING_DIM
from models.recommender import NewPost
from models.sentiment import PolarityScores, SentimentScores
from models.trends import TrendsAnswer
from tests.unit.deployments.ingress.fakes import FakeNode, LocalNode, answer

HOUR_S = 3600.0


def _vector(text: str) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8])
    vector = np.random.default_rng(seed).standard_normal(EMBEDDING_DIM)
    return [float(x) for x in vector / np.linalg.norm(vector)]


def _sentiment() -> SentimentScores:
    return SentimentScores("neutral", PolarityScores(0.2, 0.2, 0.6), confidence=0.6)


@pytest.fixture(autouse=True)
def _in_process_stores() -> Iterator[None]:
    saved = {name: os.environ.pop(name, None) for name in ("REDIS_URL", "MONGODB_URL")}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value


def _posts(now_s: float) -> list[NewPost]:
    """The issue's scenario: 80 posts about an eclipse in the last 6 hours, 120 about the
    weather spread over 48 hours."""
    eclipse = [
        NewPost(
            post_id=f"e{i}",
            author_id=f"a{i % 17}",
            text=f"the solar eclipse today looks amazing from spot {i % 9}",
            created_at_s=now_s - (i % 60) * 0.09 * HOUR_S - 60,
        )
        for i in range(80)
    ]
    weather = [
        NewPost(
            post_id=f"w{i}",
            author_id=f"b{i % 13}",
            text=f"rain again this afternoon and the weather stays grey number {i % 7}",
            created_at_s=now_s - (i / 120) * 48 * HOUR_S - 60,
        )
        for i in range(120)
    ]
    return eclipse + weather


def _nodes(config: dict[str, Any]) -> tuple[Any, Any]:
    embedder = FakeNode("Embedder", predict_many=lambda texts: [answer(_vector(t)) for t in texts])
    sentiment = FakeNode(
        "Sentiment", predict_many=lambda texts: [answer(_sentiment()) for _ in texts]
    )
    recommender = LocalNode("Recommender", lambda: Recommender.func_or_class(embedder, "sp:t:"))
    trends = Trends.func_or_class(recommender, sentiment)  # type: ignore[attr-defined]
    return recommender, trends


async def _scenario(config: dict[str, Any]) -> tuple[TrendsAnswer, TrendsAnswer, Any]:
    recommender, trends = _nodes(config)
    await trends.reconfigure(config)
    # The node's loop computes the snapshot on start: let it finish on the empty store first,
    # or it could read the posts below itself.
    while trends._runs == 0:
        await asyncio.sleep(0.01)
    before = await trends.refresh()
    assert before.report.window_post_count == 0
    await recommender.ingest_posts.remote(_posts(time.time()))
    first = await trends.trends(24.0, 10)
    second = await trends.trends(24.0, 10)
    return first, second, trends


def test_posts_after_the_snapshot_are_counted_by_the_next_read() -> None:
    first, second, _ = asyncio.run(_scenario({"dirty_min_interval_s": 0.0}))
    # 80 eclipse posts plus the weather posts of the last 24 h (half of 120).
    assert first.report.window_post_count >= 80 + 55
    assert first.source == "background"
    assert not first.stale
    keywords = {word for trend in first.report.trends for word in trend.keywords}
    assert "eclipse" in keywords
    # Nothing arrived since: the second read is the same run, not a new one.
    assert second.report.computed_at == first.report.computed_at
    assert not second.stale


def test_a_young_dirty_snapshot_says_stale_and_when_the_next_run_lands() -> None:
    async def scenario() -> tuple[TrendsAnswer, TrendsAnswer]:
        first, _, trends = await _scenario({"dirty_min_interval_s": 3600.0})
        # The loop was woken for when the interval allows; a manual refresh stands in.
        await trends.refresh()
        return first, await trends.trends(24.0, 10)

    first, later = asyncio.run(scenario())
    assert first.stale
    assert first.report.window_post_count == 0
    assert first.next_run_in_s is not None and 3500 < first.next_run_in_s <= 3600
    assert not later.stale
    assert later.report.window_post_count >= 80 + 55


def test_an_on_demand_result_is_not_reused_after_new_posts() -> None:
    async def scenario() -> tuple[int, str, int, str]:
        recommender, trends = _nodes({})
        await trends.reconfigure({"on_demand_cache_s": 3600.0})
        empty = await trends.trends(6.0, 10)
        await recommender.ingest_posts.remote(_posts(time.time()))
        after = await trends.trends(6.0, 10)
        return (
            empty.report.window_post_count,
            empty.source,
            after.report.window_post_count,
            after.source,
        )

    empty_count, empty_source, count, source = asyncio.run(scenario())
    assert (empty_count, empty_source) == (0, "on_demand")
    assert source == "on_demand"
    assert count >= 80
