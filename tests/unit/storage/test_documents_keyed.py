"""The embedded document store answers lookups by id from its keyed store, with mongomock's
own results (no Ray, no server)."""

from __future__ import annotations

from typing import Any

import mongomock
import pytest

from storage import documents
from storage.documents import InteractionRepository, PostRepository, open_database


def _events(count: int) -> list[dict[str, Any]]:
    return [
        {
            "_id": f"e{i}",
            "user_id": f"u{i % 7}",
            "post_id": f"p{i % 11}",
            "applied": False,
            "timestamp_s": float(i),
        }
        for i in range(count)
    ]


def test_lookups_by_id_match_a_plain_mongomock_store() -> None:
    database, info = open_database("")
    assert info.kind.startswith("embedded")
    plain = mongomock.MongoClient(tz_aware=True)["plain"]
    keyed_events, plain_events = InteractionRepository(database), InteractionRepository(plain)
    for repository in (keyed_events, plain_events):
        repository.insert_many(_events(50))
        repository.mark_applied(["e3", "e4", "missing", "e3"])
    ids = ["e4", "nope", "e10", "e3"]
    assert keyed_events.get_many(ids) == plain_events.get_many(ids)
    assert set(keyed_events.get_many(ids)) == {"e3", "e4", "e10"}
    assert keyed_events.existing_ids(ids) == {"e3", "e4", "e10"}
    assert [d["_id"] for d in keyed_events.unapplied()] == [
        d["_id"] for d in plain_events.unapplied()
    ]
    assert keyed_events.recent_for_user("u3", 3) == plain_events.recent_for_user("u3", 3)

    posts = PostRepository(database)
    posts.upsert({"_id": "p1", "text": "one", "created_at_s": 1.0})
    posts.upsert({"_id": "p1", "text": "one, edited", "created_at_s": 1.0})
    assert posts.get_many(["p1", "p2"]) == {
        "p1": {"_id": "p1", "text": "one, edited", "created_at_s": 1.0}
    }
    assert posts.count() == 1


def test_a_lookup_by_id_reads_only_the_asked_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    database, _ = open_database("")
    repository = InteractionRepository(database)
    repository.insert_many(_events(2000))
    matched: list[object] = []
    original = documents.mongomock.filtering.filter_applies

    def counting(spec: object, document: object) -> bool:
        matched.append(document)
        return bool(original(spec, document))

    monkeypatch.setattr(documents.mongomock.collection, "filter_applies", counting)
    assert set(repository.get_many(["e5", "e1999"])) == {"e5", "e1999"}
    repository.mark_applied(["e5"])
    assert matched == [], "an id lookup scanned the stored documents"
    # Any other filter is still mongomock's own scan.
    assert len(repository.recent_for_user("u1", 5)) == 5
    assert len(matched) >= 2000


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"_id": "a"}, ["a"]),
        ({"_id": {"$in": ["a", "b", "a"]}}, ["a", "b"]),
        ({"_id": {"$nin": ["a"]}}, None),
        ({"_id": "a", "applied": False}, None),
        ({"_id": 3}, None),
        ({}, None),
    ],
)
def test_only_filters_on_id_alone_take_the_keyed_path(spec: object, expected: object) -> None:
    assert documents._id_lookup(spec) == expected


def test_fast_insert_and_update_keep_mongomocks_results_and_errors() -> None:
    database, _ = open_database("")
    plain = mongomock.MongoClient(tz_aware=True)["plain"]
    for db in (database, plain):
        collection = db["events"]
        collection.insert_many(_events(20))
        result = collection.update_many(
            {"_id": {"$in": ["e1", "e2", "gone"]}}, {"$set": {"applied": True}}
        )
        assert (result.matched_count, result.modified_count) == (2, 2)
        again = collection.update_many({"_id": "e1"}, {"$set": {"applied": True}})
        assert (again.matched_count, again.modified_count) == (1, 0)
        # A duplicate id (stored, or twice in the batch) raises as mongomock does.
        with pytest.raises(mongomock.BulkWriteError):
            collection.insert_many([{"_id": "e100"}, {"_id": "e1"}])
        with pytest.raises(mongomock.BulkWriteError):
            collection.insert_many([{"_id": "e200"}, {"_id": "e200"}])
    fast = sorted(database["events"].find({}), key=lambda d: d["_id"])
    slow = sorted(plain["events"].find({}), key=lambda d: d["_id"])
    assert fast == slow
    # The stored document is a copy: changing the caller's dict changes nothing stored.
    mine = {"_id": "mine", "applied": False}
    database["events"].insert_many([mine])
    mine["applied"] = True
    assert database["events"].find_one({"_id": "mine"})["applied"] is False
