"""The learned blend in the Recommender: what feeds log, the bounded log, the weights it loads.

No Ray, no Redis; posts without text (no embedding needed)."""

from __future__ import annotations

import threading
from pathlib import Path

import mongomock
import pytest

from configs.recommender import RecommenderConfig
from deployments.nodes.recommender_state import ImpressionWriter, RecommenderService
from models.blend import TERMS, BlendWeights
from models.ranking import ScoreWeights, hash_user_id
from models.recommender import Interaction, NewPost
from storage.documents import ImpressionRepository, open_database

NOW = 1_767_225_600.0
CANDIDATES = ["p2", "p3", "p4"]


def _service(**config: object) -> RecommenderService:
    """d liked p1; people who liked p1 liked p2 (neighbour); p3 is the popular one."""
    service = RecommenderService(RecommenderConfig(mmr_lambda=1.0, **config))  # type: ignore[arg-type]
    service.ingest_posts(
        [NewPost(post_id=f"p{i}", author_id="a", created_at_s=NOW - 3600) for i in range(1, 6)]
    )
    events = [(u, p) for u in ("a", "b", "c") for p in ("p1", "p2")]
    events += [(f"fan{i}", "p3") for i in range(6)] + [("d", "p1")]
    service.ingest_interactions(
        [Interaction(f"e{i}", u, p, "like", NOW) for i, (u, p) in enumerate(events)]
    )
    return service


def _order(service: RecommenderService, user: str = "d") -> list[str]:
    answer = service.rank_feed(user, CANDIDATES, 3, now_s=NOW, use_cache=False)
    return [item.post_id for item in answer.posts]


def test_a_served_feed_logs_hashed_users_positions_and_term_values() -> None:
    service = _service()
    answer = service.rank_feed("d", CANDIDATES, 2, now_s=NOW, use_cache=False)
    page = service.export_impressions(None, 100)
    assert [row.post_id for row in page.impressions] == [p.post_id for p in answer.posts]
    assert [row.position for row in page.impressions] == [0, 1]
    salt = service.config.impressions.user_id_salt
    for row in page.impressions:
        assert row.user_hash == hash_user_id("d", salt) and "d" != row.user_hash
        assert row.served_at_s == NOW and row.blend_version == "hand-set"
        # No text in this corpus and no model: those terms were off, the others on.
        assert row.content is None and row.collaborative is None
        assert row.freshness is not None and row.popularity is not None
        assert row.neighbour is not None
    assert page.next_after is None
    # A cold-start user's feed logs its two terms and nothing else.
    service.rank_feed("newcomer", CANDIDATES, 1, now_s=NOW + 1, use_cache=False)
    newest = service.export_impressions(page.impressions[-1].impression_id, 100).impressions
    assert [r.neighbour for r in newest] == [None] and newest[0].popularity is not None


def test_the_log_can_be_switched_off() -> None:
    service = _service(impressions={"enabled": False})
    service.rank_feed("d", CANDIDATES, 3, now_s=NOW, use_cache=False)
    assert service.export_impressions(None, 10).impressions == ()


def test_the_log_stays_within_its_bound_and_drops_the_oldest() -> None:
    log = ImpressionRepository(open_database("")[0], max_impressions=100)
    for feed in range(30):
        log.record([{"_id": f"{feed:015d}-x-{p:04d}", "feed_id": str(feed)} for p in range(10)])
        assert log.count() <= 110
    assert log.dropped >= 190
    kept = log.page_after(None, 1000)
    assert len(kept) == log.count()
    assert kept[-1]["_id"] == f"{29:015d}-x-{9:04d}"  # the newest stay
    assert int(kept[0]["feed_id"]) >= 18  # the oldest went first
    # The same bound on a plain mongomock collection (the path real MongoDB takes).
    plain = ImpressionRepository(mongomock.MongoClient()["x"], max_impressions=100)  # type: ignore[arg-type]
    for feed in range(30):
        plain.record([{"_id": f"{feed:015d}-x-{p:04d}", "feed_id": str(feed)} for p in range(10)])
    assert plain.count() <= 110 and plain.page_after(None, 1000)[0]["feed_id"] != "0"


def test_a_failing_log_never_fails_the_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    service = _service()

    def broken(documents: object) -> None:
        raise ConnectionError("document store down")

    monkeypatch.setattr(service.impression_log, "record", broken)
    assert _order(service) == ["p2", "p3", "p4"]
    assert service.flush_impressions(timeout_s=10)
    assert service.info().impressions["errors"] == 1
    # No hash secret outside development mode: nothing can be logged, the feed still comes.
    monkeypatch.undo()
    monkeypatch.delenv("SOCIALPLAY_HASH_SECRET", raising=False)
    monkeypatch.setenv("SOCIALPLAY_DEV_MODE", "0")
    from configs.settings import get_settings

    get_settings.cache_clear()
    assert _order(service) == ["p2", "p3", "p4"]
    assert service.info().impressions["errors"] == 2
    assert service.export_impressions(None, 10).impressions == ()


def test_a_store_that_does_not_answer_never_holds_the_feed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = _service()
    release = threading.Event()
    written: list[int] = []

    def stuck(documents: list[dict[str, object]]) -> None:
        release.wait(timeout=30)  # a MongoDB that does not answer
        written.append(len(documents))

    monkeypatch.setattr(service.impression_log, "record", stuck)
    # Both feeds are answered while the first write still hangs; their rows wait in the queue.
    assert _order(service) == ["p2", "p3", "p4"]
    assert _order(service) == ["p2", "p3", "p4"]
    assert not service.flush_impressions(timeout_s=0.2)
    release.set()
    assert service.flush_impressions(timeout_s=10)
    assert sum(written) == 6 and service.info().impressions["queued"] == 0


def test_a_full_queue_drops_new_rows_and_counts_them() -> None:
    log = ImpressionRepository(open_database("")[0], max_impressions=100)
    writer = ImpressionWriter(log, max_queued_feeds=0)
    writer.submit([{"_id": "a", "feed_id": "f"}, {"_id": "b", "feed_id": "f"}])
    assert writer.dropped_unwritten == 2 and writer.flush(timeout_s=1) and log.count() == 0


def test_promoted_weights_rank_the_feed_and_the_answer_names_their_version(
    tmp_path: Path,
) -> None:
    hand_set = _service()
    assert _order(hand_set)[0] == "p2"  # the neighbour term (0.5) outweighs popularity (0.2)
    terms = hand_set.rank_feed("d", CANDIDATES, 3, now_s=NOW, use_cache=False).terms
    assert terms.blend.source == "hand-set" and terms.blend.version == "hand-set"

    learned = ScoreWeights(
        content=0.1, freshness=0.01, popularity=0.9, collaborative=0.1, neighbour=0.01
    )
    BlendWeights(learned, "recommender-blend/7").save(tmp_path / "v7")
    service = _service(blend_weights_path=str(tmp_path / "v7"))
    answer = service.rank_feed("d", CANDIDATES, 3, now_s=NOW, use_cache=False)
    assert [p.post_id for p in answer.posts][0] == "p3"
    assert answer.terms.blend.source == "learned"
    assert answer.terms.blend.version == "recommender-blend/7"
    assert answer.terms.popularity.weight == 0.9 and answer.terms.neighbour.weight == 0.01
    logged = service.export_impressions(None, 10).impressions
    assert {row.blend_version for row in logged} == {"recommender-blend/7"}

    # Live reconfigure back to no path: the hand-set weights, exactly as before.
    service.reconfigure(RecommenderConfig(mmr_lambda=1.0))
    assert _order(service) == _order(hand_set)
    assert service.info().blend.source == "hand-set"


def test_an_unreadable_blend_keeps_the_hand_set_weights_and_says_why(tmp_path: Path) -> None:
    service = _service(blend_weights_path=str(tmp_path / "missing"))
    answer = service.rank_feed("d", CANDIDATES, 3, now_s=NOW, use_cache=False)
    assert [p.post_id for p in answer.posts] == _order(_service())
    assert answer.terms.blend.source == "hand-set"
    assert "blend.json" in str(answer.terms.blend.error)
    assert set(TERMS) <= set(vars(service.weights()))
