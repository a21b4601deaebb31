"""The pure parts around trends and replies serving: label cache, store rows into trend posts,
topic resolution, the configs, and the batched reply model (one encoder call per batch)."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from configs.app import AppArgs
from configs.ingress import IngressConfig
from configs.replies import RepliesArgs
from configs.trends import TrendRoutesConfig, TrendsNodeConfig
from deployments.ingress.services.trends import check_trend_limit, check_window_hours
from models.answers import ModelInfo
from models.exceptions import InvalidInputError
from models.recommender import NewPost, RecentPost
from models.replies import ReplyBank, ReplyConfig, ReplyIntent, ReplyQuery, SmartReplier
from models.reply_model import ReplyModel, _PrecomputedEncoder
from models.trend_inputs import LabelCache, resolve_topic, trend_posts
from models.trends import TrendReport, TrendResult

NOW_S = datetime(2026, 11, 25, 12, tzinfo=UTC).timestamp()


def row(post_id: str, text: str = "solar eclipse tonight", **extra: Any) -> RecentPost:
    fields_ = {"text_hash": f"h-{text}", "created_at_s": NOW_S, "moderation_action": None}
    return RecentPost(post_id=post_id, text=text, **{**fields_, **extra})


# ---- label cache ------------------------------------------------------------------------
def test_label_cache_labels_once_and_again_after_an_edit() -> None:
    cache = LabelCache()
    rows = [row("a"), row("b", "rain again"), row("c", "   ")]
    # A post without text is never sent to the sentiment node.
    assert [r.post_id for r in cache.unlabelled(rows)] == ["a", "b"]
    assert cache.put(rows[:2], ["POSITIVE", "negative"]) == 2
    assert cache.unlabelled(rows) == []
    assert cache.label("a", "h-solar eclipse tonight") == "positive"
    edited = row("a", "solar eclipse was cloudy")
    assert cache.label("a", edited.text_hash) is None
    assert [r.post_id for r in cache.unlabelled([edited])] == ["a"]


def test_label_cache_skips_unknown_labels_and_checks_lengths() -> None:
    cache = LabelCache()
    assert cache.put([row("a")], ["mixed"]) == 0
    assert len(cache) == 0
    with pytest.raises(ValueError, match="1 labels for 2 posts"):
        cache.put([row("a"), row("b")], ["neutral"])


def test_label_cache_prunes_posts_outside_the_windows_only_over_the_bound() -> None:
    cache = LabelCache()
    cache.put([row(str(i)) for i in range(5)], ["neutral"] * 5)
    assert cache.prune(["0", "1"], max_entries=10) == 0
    assert cache.prune(["0", "1"], max_entries=3) == 3
    assert len(cache) == 2


# ---- rows into trend posts ----------------------------------------------------------------
def test_trend_posts_leave_out_flagged_and_empty_posts_and_carry_labels() -> None:
    cache = LabelCache()
    rows = [
        row("ok"),
        row("flagged", moderation_action="flag_for_review"),
        row("rejected", moderation_action="reject"),
        row("approved", "approved text", moderation_action="approve"),
        row("image-only", ""),
    ]
    cache.put(rows[:1], ["negative"])
    posts = trend_posts(rows, cache)
    assert [p.post_id for p in posts] == ["ok", "approved"]
    assert posts[0].sentiment_label == "negative" and posts[1].sentiment_label is None
    assert posts[0].created_at == datetime.fromtimestamp(NOW_S, tz=UTC)
    assert posts[0].created_at.tzinfo is not None


# ---- topics -------------------------------------------------------------------------------
REPORT = TrendReport(
    computed_at=datetime.fromtimestamp(NOW_S, tz=UTC),
    window_hours=24.0,
    window_post_count=3,
    previous_window_post_count=0,
    trends=(
        TrendResult(
            trend_id="0123456789ab",
            keywords=("solar", "eclipse"),
            post_count=3,
            previous_count=0,
            growth=4.0,
            sample_post_ids=(),
            sentiment={},
            labelled_count=0,
            score=4.1,
        ),
    ),
    duration_s=0.1,
)


def test_a_known_trend_id_resolves_to_its_keywords() -> None:
    resolved = resolve_topic("0123456789ab", [REPORT])
    assert resolved.terms == ("solar", "eclipse")
    assert (resolved.kind, resolved.trend_id) == ("trend", "0123456789ab")


@pytest.mark.parametrize("topic", ["eclipse", "ffffffffffff", "  solar   eclipse "])
def test_anything_else_is_a_keyword(topic: str) -> None:
    resolved = resolve_topic(topic, [REPORT])
    assert resolved.kind == "keyword" and resolved.terms == (" ".join(topic.split()),)


def test_blank_topic_is_refused() -> None:
    with pytest.raises(ValueError, match="blank"):
        resolve_topic("  ", [])


# ---- route checks and configs -------------------------------------------------------------
@pytest.mark.parametrize("hours", [0.0, 0.5, 169.0, 10_000.0, float("nan"), float("inf")])
def test_window_outside_the_range_names_window_hours(hours: float) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_window_hours(hours, 1.0, 168.0)
    assert caught.value.field == "window_hours"
    assert "1 to 168" in caught.value.message


@pytest.mark.parametrize("limit", [0, -1, 51])
def test_trend_limit_out_of_range_names_limit(limit: int) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_trend_limit(limit, 50)
    assert caught.value.field == "limit"


def test_trends_need_the_recommender() -> None:
    with pytest.raises(ValidationError, match="enable the recommender"):
        AppArgs.model_validate({"trends": {"enabled": True}})
    AppArgs.model_validate({"trends": {"enabled": True}, "recommender": {"enabled": True}})


def test_seq2seq_replies_need_a_path_and_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="needs replies.path"):
        RepliesArgs.model_validate({"enabled": True, "kind": "seq2seq"})
    with pytest.raises(ValidationError, match="extra"):
        TrendsNodeConfig.model_validate({"period": 5})
    with pytest.raises(ValidationError, match="below min_window_hours"):
        TrendRoutesConfig.model_validate({"min_window_hours": 10, "max_window_hours": 5})
    ingress = IngressConfig.model_validate({"replies": {"max_limit": 3}})
    assert ingress.trends.max_window_hours == 168.0


# ---- batched replies ----------------------------------------------------------------------
class _FakeEmbedder:
    """Hashed bag of words; records every call (stands in for MiniLM)."""

    dim = 64

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[i, sum(map(ord, word)) % self.dim] += 1.0
        return out


def _bank() -> ReplyBank:
    return ReplyBank(
        (
            ReplyIntent("welcome", ("thank you",), ("you are welcome", "anytime")),
            ReplyIntent("yes", ("are you coming",), ("yes",)),
            ReplyIntent("no", ("are you coming",), ("no",)),
            ReplyIntent("party", ("party tonight",), ("see you at the party",)),
        )
    )


def test_a_batch_embeds_its_messages_in_one_call_and_answers_like_the_replier() -> None:
    embedder = _FakeEmbedder()
    encoder = _PrecomputedEncoder(embedder)  # type: ignore[arg-type]
    config = ReplyConfig(min_similarity=0.1, max_message_chars=40)
    model = ReplyModel(
        SmartReplier(_bank(), encoder, config), ModelInfo("t", "0", "cpu", ()), encoder, config
    )
    reference = SmartReplier(_bank(), _FakeEmbedder().embed, config)
    requests = [
        ReplyQuery("thank you", ("party tonight",), 2),
        ReplyQuery("are you coming?", (), 3),
        ReplyQuery("x" * 41, (), 3),
        ReplyQuery("thank you", (), 1, flagged_by_moderation=True),
    ]
    calls_after_build = len(embedder.calls)
    results = model.predict_batch(requests)
    # One encoder call for the whole batch; the too-long message is never embedded.
    assert embedder.calls[calls_after_build:] == [["thank you", "party tonight", "are you coming?"]]
    for request, result in zip(requests, results, strict=True):
        expected = reference.suggest(
            request.message,
            list(request.context) or None,
            request.limit,
            request.flagged_by_moderation,
        )
        assert result == expected
    assert {s.intent for s in results[1].suggestions} >= {"yes", "no"}
    assert results[2].reason == "message_too_long"
    assert results[3].reason == "flagged_by_moderation"


# ---- the store read the Trends node makes -------------------------------------------------
def test_recent_posts_are_newest_first_bounded_and_say_when_truncated() -> None:
    from deployments.nodes.recommender_state import RecommenderService

    service = RecommenderService()
    posts = [
        NewPost(
            post_id=f"p{i}",
            author_id="a",
            text=f"post number {i}" if i != 3 else "",
            created_at_s=NOW_S - 3600 * i,
            moderation_action="reject" if i == 1 else None,
        )
        for i in range(6)
    ]
    service.ingest_posts(posts, {})
    recent = service.recent_posts(NOW_S - 3600 * 4.5, limit=10)
    assert [p.post_id for p in recent.posts] == ["p0", "p1", "p2", "p3", "p4"]
    assert recent.truncated is False
    assert {f.name for f in fields(recent.posts[0])} == {
        "post_id",
        "text",
        "text_hash",
        "created_at_s",
        "moderation_action",
    }
    assert recent.posts[1].moderation_action == "reject"
    assert recent.posts[3].text_hash is None
    bounded = service.recent_posts(NOW_S - 3600 * 4.5, limit=2)
    assert [p.post_id for p in bounded.posts] == ["p0", "p1"]
    assert bounded.truncated is True
    with pytest.raises(ValueError, match="limit=0"):
        service.recent_posts(NOW_S, limit=0)


def test_snapshot_freshness_recomputes_a_dirty_snapshot_once_old_enough() -> None:
    from models.trend_inputs import snapshot_freshness

    old = snapshot_freshness(True, 12.0, 300.0, 5.0, 600.0)
    assert (old.recompute, old.stale, old.next_run_in_s) == (True, False, 0.0)
    young = snapshot_freshness(True, 2.0, 300.0, 5.0, 600.0)
    assert (young.recompute, young.stale, young.next_run_in_s) == (False, True, 3.0)
    clean = snapshot_freshness(False, 100.0, 300.0, 5.0, 600.0)
    assert (clean.recompute, clean.stale, clean.next_run_in_s) == (False, False, 200.0)
    failing = snapshot_freshness(False, 700.0, 300.0, 5.0, 600.0)
    assert (failing.recompute, failing.stale, failing.next_run_in_s) == (False, True, 0.0)
