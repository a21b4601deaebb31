"""Trend detection and topic sentiment on synthetic post streams."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from models.trends import (
    TopicSentiment,
    TopicSentimentAnswer,
    TrendConfig,
    TrendDetector,
    TrendPost,
    TrendReport,
    TrendRun,
    TrendsAnswer,
    topic_sentiment,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW_HOURS = 24.0
_FILLERS = (
    "wow honestly today really amazing crazy people guys just saw watching everyone "
    "finally tonight news live"
).split()
_BACKGROUND = (
    "my cat slept all day",
    "new recipe for pasta tonight",
    "traffic downtown is awful",
    "reading a good book",
    "coffee shop vibes",
    "gym session done",
    "rainy weekend plans",
    "learning guitar chords",
)


class _Stream:
    """Builds posts with ids p0, p1, ... at random times inside an hours-ago range."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.posts: list[TrendPost] = []

    def add(
        self,
        topic: str,
        count: int,
        hours_ago: tuple[float, float],
        label: str | None = None,
    ) -> list[str]:
        ids = []
        for _ in range(count):
            a, b, c = self.rng.sample(_FILLERS, 3)
            created = NOW - timedelta(hours=self.rng.uniform(*hours_ago))
            post_id = f"p{len(self.posts)}"
            self.posts.append(TrendPost(post_id, f"{a} the {topic} {b} {c}", created, label))
            ids.append(post_id)
        return ids


# Inside the current window, inside the previous one (kept off the exact boundaries).
CURRENT = (0.01, WINDOW_HOURS - 0.01)
PREVIOUS = (WINDOW_HOURS + 0.01, 2 * WINDOW_HOURS - 0.01)


@pytest.fixture(scope="module")
def surge_stream() -> _Stream:
    """'solar eclipse' 10 -> 300 (last 6 h), 'football match' 800 -> 800, background steady."""
    stream = _Stream()
    stream.add("solar eclipse", 10, PREVIOUS)
    stream.add("solar eclipse", 200, (0.01, 6.0), "positive")
    stream.add("solar eclipse", 60, (0.01, 6.0), "negative")
    stream.add("solar eclipse", 40, (0.01, 6.0), None)
    stream.add("football match", 800, PREVIOUS, "neutral")
    stream.add("football match", 800, CURRENT, "neutral")
    for topic in _BACKGROUND:
        stream.add(topic, 60, PREVIOUS)
        stream.add(topic, 60, CURRENT)
    return stream


@pytest.fixture(scope="module")
def surge_report(surge_stream: _Stream) -> TrendReport:
    return TrendDetector().detect(surge_stream.posts, NOW, WINDOW_HOURS, limit=10)


def test_surging_topic_is_the_top_trend(surge_report: TrendReport) -> None:
    assert surge_report.trends, "the surging topic must be reported"
    top = surge_report.trends[0]
    assert {"solar", "eclipse"} <= set(top.keywords)
    assert top.post_count == 300
    assert top.previous_count == 10
    assert top.growth == pytest.approx(301 / 11)
    assert len(top.sample_post_ids) == 3
    assert len(set(top.sample_post_ids)) == 3


def test_steady_big_topic_is_not_trending(surge_report: TrendReport) -> None:
    for trend in surge_report.trends:
        assert "football" not in trend.keywords
        assert trend.growth >= TrendConfig().min_growth
    # Nothing but the surge grows in this stream.
    assert len(surge_report.trends) == 1


def test_steady_topic_growth_is_about_one(surge_stream: _Stream) -> None:
    # min_growth just above 1 lets the steady topic through so its growth can be read.
    detector = TrendDetector(TrendConfig(min_growth=1.0001))
    report = detector.detect(surge_stream.posts, NOW, WINDOW_HOURS, limit=50)
    football = [t for t in report.trends if "football" in t.keywords]
    if football:  # absent is also correct: 801/801 is exactly 1, below any min_growth
        assert football[0].growth == pytest.approx(1.0, abs=0.05)
        assert football[0].score < report.trends[0].score / 10
    assert {"solar", "eclipse"} <= set(report.trends[0].keywords)


def test_trend_sentiment_shares_cover_labelled_posts_only(surge_report: TrendReport) -> None:
    top = surge_report.trends[0]
    assert top.labelled_count == 260
    assert top.sentiment == pytest.approx(
        {"positive": 200 / 260, "negative": 60 / 260, "neutral": 0.0}
    )


def test_report_metadata_and_dict(surge_report: TrendReport) -> None:
    assert surge_report.computed_at == NOW
    assert surge_report.window_post_count == 300 + 800 + 60 * len(_BACKGROUND)
    assert surge_report.previous_window_post_count == 10 + 800 + 60 * len(_BACKGROUND)
    as_dict = surge_report.as_dict()
    assert as_dict["computed_at"] == NOW.isoformat()
    trend = as_dict["trends"][0]
    assert set(trend) >= {
        "trend_id",
        "keywords",
        "post_count",
        "previous_count",
        "growth",
        "sample_post_ids",
        "sentiment",
        "score",
    }


def test_trend_id_is_stable_across_runs_and_seeds(surge_stream: _Stream) -> None:
    first = TrendDetector().detect(surge_stream.posts, NOW, WINDOW_HOURS).trends[0]
    shuffled = list(surge_stream.posts)
    random.Random(3).shuffle(shuffled)
    other = TrendDetector(TrendConfig(random_state=11)).detect(shuffled, NOW, WINDOW_HOURS)
    assert other.trends[0].trend_id == first.trend_id


def test_small_surge_among_many_steady_topics_is_found() -> None:
    # More steady topics than k-means clusters: clustering the whole window would give the
    # small surge no centroid of its own (why the detector clusters bursty posts only).
    rng = random.Random(5)
    syllables = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "ba", "do", "fi")
    names = {
        " ".join("".join(rng.choice(syllables) for _ in range(3)) for _ in range(2))
        for _ in range(300)
    }
    stream = _Stream()
    for name in sorted(names):
        stream.add(name, 15, PREVIOUS)
        stream.add(name, 15, CURRENT)
    stream.add("solar eclipse", 2, PREVIOUS)
    stream.add("solar eclipse", 40, (0.01, 3.0))
    config = TrendConfig(kmeans_clusters=32)
    trends = TrendDetector(config).detect(stream.posts, NOW, WINDOW_HOURS).trends
    assert trends, "the small surge must be found"
    assert {"solar", "eclipse"} <= set(trends[0].keywords)
    assert trends[0].post_count == 40
    assert trends[0].previous_count == 2


def test_limit_is_respected() -> None:
    stream = _Stream()
    for topic in ("solar eclipse", "stock crash", "volcano eruption"):
        stream.add(topic, 5, PREVIOUS)
        stream.add(topic, 100, CURRENT)
    stream.add("football match", 300, PREVIOUS)
    stream.add("football match", 300, CURRENT)
    all_trends = TrendDetector().detect(stream.posts, NOW, WINDOW_HOURS, limit=10).trends
    assert len(all_trends) == 3
    assert len({t.trend_id for t in all_trends}) == 3
    assert [t.score for t in all_trends] == sorted((t.score for t in all_trends), reverse=True)
    assert len(TrendDetector().detect(stream.posts, NOW, WINDOW_HOURS, limit=2).trends) == 2


def test_empty_window_gives_no_trends() -> None:
    report = TrendDetector().detect([], NOW, WINDOW_HOURS)
    assert report.trends == ()
    assert report.window_post_count == 0


def test_window_smaller_than_min_cluster_posts_gives_no_trends() -> None:
    stream = _Stream()
    stream.add("solar eclipse", TrendConfig().min_cluster_posts - 1, CURRENT)
    assert TrendDetector().detect(stream.posts, NOW, WINDOW_HOURS).trends == ()


def test_stop_words_only_window_gives_no_trends() -> None:
    created = NOW - timedelta(hours=1)
    posts = [TrendPost(f"p{i}", "the and of it is", created) for i in range(50)]
    assert TrendDetector().detect(posts, NOW, WINDOW_HOURS).trends == ()


def test_posts_older_than_two_windows_and_future_posts_are_ignored() -> None:
    stream = _Stream()
    stream.add("solar eclipse", 100, CURRENT)
    # A huge "previous" volume that is actually older than two windows must not count.
    stream.add("solar eclipse", 500, (2 * WINDOW_HOURS + 0.01, 3 * WINDOW_HOURS))
    stream.add("solar eclipse", 500, (-5.0, -0.01))  # after `now` (clock skew)
    report = TrendDetector().detect(stream.posts, NOW, WINDOW_HOURS)
    assert report.window_post_count == 100
    assert report.previous_window_post_count == 0
    assert report.trends[0].previous_count == 0
    assert report.trends[0].post_count == 100


def test_window_boundaries_are_half_open() -> None:
    window = timedelta(hours=WINDOW_HOURS)
    posts = [
        TrendPost("now", "x", NOW),  # in the current window (end inclusive)
        TrendPost("start", "x", NOW - window),  # belongs to the previous window
        TrendPost("prev_start", "x", NOW - 2 * window),  # too old
    ]
    report = TrendDetector().detect(posts, NOW, WINDOW_HOURS)
    assert (report.window_post_count, report.previous_window_post_count) == (1, 1)


def test_bad_arguments_name_the_value() -> None:
    detector = TrendDetector()
    with pytest.raises(ValueError, match="window_hours=0"):
        detector.detect([], NOW, 0)
    with pytest.raises(ValueError, match="limit=0"):
        detector.detect([], NOW, WINDOW_HOURS, limit=0)
    with pytest.raises(ValueError, match="now is a naive datetime"):
        detector.detect([], NOW.replace(tzinfo=None), WINDOW_HOURS)
    naive = TrendPost("p-naive", "x", NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="p-naive"):
        detector.detect([naive], NOW, WINDOW_HOURS)
    with pytest.raises(ValueError, match="min_growth"):
        TrendConfig(min_growth=1.0)
    with pytest.raises(ValueError, match="min_df"):
        TrendConfig(min_df=20, min_cluster_posts=10)


def _labelled_posts() -> list[TrendPost]:
    def at(hours_ago: float) -> datetime:
        return NOW - timedelta(hours=hours_ago)

    return [
        TrendPost("1", "The Solar Eclipse was stunning", at(1), "positive"),
        TrendPost("2", "solar eclipse glasses sold out, terrible", at(2), "negative"),
        TrendPost("3", "ECLIPSE tonight!", at(3), "POSITIVE"),
        TrendPost("4", "eclipse viewing at 9pm", at(4), "neutral"),
        TrendPost("5", "watching the eclipse", at(5), None),
        TrendPost("6", "eclipsed by the news", at(6), "negative"),  # not a whole word
        TrendPost("7", "Eclipse day tomorrow", at(30), "negative"),  # outside the window
        TrendPost("8", "football tonight", at(1), "positive"),
    ]


def test_topic_sentiment_counts_and_percentages() -> None:
    result = topic_sentiment(_labelled_posts(), "eclipse", NOW, WINDOW_HOURS)
    assert isinstance(result, TopicSentiment)
    assert result.total == 5
    assert result.labelled == 4
    assert result.counts == {"positive": 2, "negative": 1, "neutral": 1}
    assert result.percentages == pytest.approx(
        {"positive": 50.0, "negative": 25.0, "neutral": 25.0}
    )
    assert result.as_dict()["topic"] == ["eclipse"]


def test_node_answers_flatten_into_one_json_object(surge_report: TrendReport) -> None:
    run = TrendRun(surge_report, truncated=False, run_s=1.5, newly_labelled=3, unlabelled_posts=0)
    answer = TrendsAnswer(
        **{**vars(run), "source": "background", "age_s": 0.2, "stale": False, "period_s": 60.0}
    )
    document = answer.as_json()
    assert document == {
        **surge_report.as_dict(),
        "truncated": False,
        "run_s": 1.5,
        "newly_labelled": 3,
        "unlabelled_posts": 0,
        "source": "background",
        "age_s": 0.2,
        "stale": False,
        "period_s": 60.0,
        "next_run_in_s": None,
    }
    assert run.as_json() == {key: document[key] for key in run.as_json()}
    counts = topic_sentiment(_labelled_posts(), "eclipse", NOW, WINDOW_HOURS)
    topic = TopicSentimentAnswer(counts, "keyword", None, NOW.isoformat(), truncated=True)
    assert topic.as_json() == {
        **counts.as_dict(),
        "kind": "keyword",
        "trend_id": None,
        "computed_at": NOW.isoformat(),
        "truncated": True,
    }


def test_topic_sentiment_phrase_and_keyword_list() -> None:
    posts = _labelled_posts()
    phrase = topic_sentiment(posts, "solar eclipse", NOW, WINDOW_HOURS)
    assert phrase.total == 2
    assert phrase.counts == {"positive": 1, "negative": 1, "neutral": 0}
    keywords = topic_sentiment(posts, ["football", "solar"], NOW, WINDOW_HOURS)
    assert keywords.total == 3
    assert keywords.counts == {"positive": 2, "negative": 1, "neutral": 0}


def test_topic_sentiment_with_no_match_or_no_labels() -> None:
    posts = _labelled_posts()
    none = topic_sentiment(posts, "volcano", NOW, WINDOW_HOURS)
    assert (none.total, none.labelled) == (0, 0)
    assert none.percentages == {"positive": 0.0, "negative": 0.0, "neutral": 0.0}
    unlabelled = topic_sentiment(posts, "watching", NOW, WINDOW_HOURS)
    assert (unlabelled.total, unlabelled.labelled) == (1, 0)


def test_topic_sentiment_matches_a_trend_keyword_list(surge_report: TrendReport) -> None:
    # A trend's keywords include generic filler terms, so use the two topic words only.
    top = surge_report.trends[0]
    posts = [
        TrendPost("a", "solar eclipse now", NOW - timedelta(hours=1), "positive"),
        TrendPost("b", "unrelated", NOW - timedelta(hours=1), "negative"),
    ]
    keywords = [k for k in top.keywords if k in {"solar", "eclipse"}]
    assert topic_sentiment(posts, keywords, NOW, WINDOW_HOURS).total == 1


def test_topic_sentiment_rejects_empty_topic() -> None:
    with pytest.raises(ValueError, match="topic"):
        topic_sentiment([], "  ", NOW, WINDOW_HOURS)
    with pytest.raises(ValueError, match="topic"):
        topic_sentiment([], [], NOW, WINDOW_HOURS)
