"""Moderator reviews -> moderation head training rows (pipelines.review_labels), on mongomock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import mongomock
import numpy as np
import pytest
from pydantic import ValidationError

from configs.audit import AuditConfig
from configs.pipelines import ReviewLabelsSource, TextHeadJobConfig
from deployments.ingress.schemas.moderation import ModerationResult
from models.heads import DAVIDSON_HATE, DAVIDSON_NEITHER, DAVIDSON_OFFENSIVE
from pipelines.data import LabelledTexts, Split
from pipelines.review_labels import (
    append_training_rows,
    load_review_labels,
    read_review_labels,
    review_rows,
    review_targets,
)
from storage.audit_log import DecisionRepository, decision_document

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("verdict", "labels", "expected"),
    [
        ("approve", None, (0.0, 0.0)),
        ("reject", None, (0.0, 1.0)),
        ("flag_for_review", None, None),  # the moderator was unsure: no label
        ("reject", {"hate": True}, (1.0, 1.0)),  # hate speech is offensive too
        ("reject", {"hate_speech": True, "offensive": False}, (1.0, 1.0)),
        ("approve", {"offensive": True}, (0.0, 1.0)),  # labels win over the verdict
        ("reject", {"offensive": False, "hate": False}, (0.0, 0.0)),  # rejected for spam
        ("flag_for_review", {"offensive": True}, None),  # hate_speech still unknown
        ("flag_for_review", {"offensive": True, "hate": False}, (0.0, 1.0)),
        ("approve", {"spam": True}, (0.0, 0.0)),  # unrelated categories are ignored
        ("reject", {"toxic": True, "profanity": False}, (0.0, 1.0)),  # any alias true wins
        ("bogus", None, None),
    ],
)
def test_review_targets(
    verdict: str, labels: dict[str, bool] | None, expected: tuple[float, float] | None
) -> None:
    assert review_targets(verdict, labels) == expected


def decision(
    text: str | None,
    verdict: str | None,
    labels: dict[str, bool] | None = None,
    reviewed_at: datetime = NOW,
    user_id: str = "user-7",
) -> dict[str, Any]:
    result = ModerationResult(
        is_safe=True,
        action="approve",
        scores={"offensive": 0.1},
        overall=0.1,
        flagged_categories=[],
        model=None,
        degraded=False,
    )
    document = decision_document(
        result, text or "x", "text", AuditConfig(store_text=text is not None), user_id=user_id
    )
    if verdict is not None:
        document["review"] = {
            "verdict": verdict,
            "labels": labels,
            "reviewer_id_hash": "abc",
            "note": "called me at 555-0100",
            "reviewed_at": reviewed_at,
        }
    return document


def test_rows_from_mongomock_have_text_and_targets_only() -> None:
    repository = DecisionRepository(mongomock.MongoClient(tz_aware=True)["socialplay"])
    repository.insert_many(
        [
            decision("you are scum", "reject", {"hate_speech": True}),
            decision("damn this is bad", "reject"),
            decision("nice picture", "approve"),
            decision("not sure", "flag_for_review"),  # skipped: no label
            decision(None, "reject"),  # skipped: text not stored
            decision("never reviewed", None),  # skipped: no review
        ]
    )
    rows = read_review_labels(repository)
    assert sorted(rows.texts) == ["damn this is bad", "nice picture", "you are scum"]
    by_text = {
        text: (tuple(rows.targets[i]), int(rows.classes[i])) for i, text in enumerate(rows.texts)
    }
    assert by_text["you are scum"] == ((1.0, 1.0), DAVIDSON_HATE)
    assert by_text["damn this is bad"] == ((0.0, 1.0), DAVIDSON_OFFENSIVE)
    assert by_text["nice picture"] == ((0.0, 0.0), DAVIDSON_NEITHER)
    assert rows.labels == ("hate_speech", "offensive")
    assert rows.targets.dtype == np.float32
    # PII: nothing but texts and targets leaves the store.
    assert not any(field for field in vars(rows) if "user" in field or "note" in field)
    assert "555-0100" not in repr(rows)
    # max_rows bounds the decisions read (a skipped one still counts): at most 2 of the 3.
    assert 1 <= len(read_review_labels(repository, max_rows=2)) <= 2


def test_a_text_reviewed_twice_keeps_its_latest_review() -> None:
    rows = review_rows(
        [
            decision("borderline", "approve", reviewed_at=NOW + timedelta(hours=1)),
            decision("borderline", "reject", reviewed_at=NOW),
        ]
    )
    assert rows.texts == ["borderline"] and rows.targets.tolist() == [[0.0, 0.0]]
    empty = review_rows([])
    assert len(empty) == 0 and empty.targets.shape == (0, 2)


def test_review_rows_join_the_training_split_only() -> None:
    data = LabelledTexts(
        ["a", "b", "c", "d"],
        np.zeros((4, 2), dtype=np.float32),
        np.full(4, DAVIDSON_NEITHER),
        ("hate_speech", "offensive"),
    )
    split = Split(np.array([0, 1]), np.array([2]), np.array([3]))
    extra = review_rows([decision("new", "reject"), decision("d", "reject")])  # "d" is test
    combined, new_split = append_training_rows(data, split, extra)
    assert combined.texts == ["a", "b", "c", "d", "new"]
    assert new_split.train.tolist() == [0, 1, 4]
    assert new_split.validation.tolist() == [2] and new_split.test.tolist() == [3]
    assert combined.targets[4].tolist() == [0.0, 1.0]
    assert combined.classes[4] == DAVIDSON_OFFENSIVE


def test_without_a_mongodb_url_no_rows_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URL", "")
    assert len(load_review_labels(ReviewLabelsSource())) == 0


def test_review_labels_are_for_the_moderation_job_only() -> None:
    base: dict[str, Any] = {
        "data_paths": ["x.csv"],
        "mlflow": {"registered_model_name": "heads-moderation"},
        "review_labels": {"max_rows": 100},
    }
    assert TextHeadJobConfig(task="moderation", **base).review_labels is not None
    with pytest.raises(ValidationError, match="review_labels"):
        TextHeadJobConfig(task="sentiment", **base)
