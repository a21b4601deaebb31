"""The moderation audit log store: documents, buffering, outages, overflow and reviews (no Ray).

Recording the ingress's answers is tested with the ingress (``tests/unit/deployments/ingress``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mongomock
import pytest
from pydantic import ValidationError

from configs.audit import AuditConfig
from configs.ingress import IngressConfig
from storage.audit_log import (
    AuditLog,
    AuditStoreError,
    DecisionRepository,
    decision_document,
)
from tests.fixtures.audit import EMBEDDED, TEXT, Sleeps, config, repository, run, wait_until_written


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    device: str


@dataclass(frozen=True)
class Verdict:
    """What the store reads of a moderation answer (the ingress passes its ModerationResult)."""

    is_safe: bool
    action: str
    scores: dict[str, float]
    overall: float
    flagged_categories: list[str]
    model: ModelRef | None
    degraded: bool


def result(action: str = "flag_for_review", offensive: float = 0.7) -> Verdict:
    return Verdict(
        is_safe=action == "approve",
        action=action,
        scores={"offensive": offensive},
        overall=offensive,
        flagged_categories=["offensive"] if action != "approve" else [],
        model=ModelRef(name="alt-profanity-check", version="1.2", device="cpu"),
        degraded=False,
    )


class FlakyRepository(DecisionRepository):
    """Fails the first ``failures`` writes (and every read while ``down``), then works."""

    def __init__(self, failures: int) -> None:
        super().__init__(mongomock.MongoClient(tz_aware=True)["test"])
        self.failures = failures
        self.write_calls = 0

    def insert_many(self, documents: Any) -> None:
        self.write_calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store down")
        super().insert_many(documents)

    def set_review(self, decision_id: str, review: dict[str, Any]) -> dict[str, Any] | None:
        if self.failures > 0:
            raise ConnectionError("store down")
        return super().set_review(decision_id, review)


def record_many(log: AuditLog, count: int) -> list[str]:
    ids = []
    for index in range(count):
        document = decision_document(result(), f"text {index}", "text", log.config)
        log.record(document)
        ids.append(document["_id"])
    return ids


def test_user_id_hash_is_salted_and_stable() -> None:
    salted = decision_document(result(), TEXT, "text", config(user_id_salt="a"), user_id="u1")
    same = decision_document(result(), TEXT, "text", config(user_id_salt="a"), user_id="u1")
    other_salt = decision_document(result(), TEXT, "text", config(user_id_salt="b"), user_id="u1")
    anonymous = decision_document(result(), TEXT, "text", config())
    assert salted["user_id_hash"] == same["user_id_hash"] != other_salt["user_id_hash"]
    assert anonymous["user_id_hash"] is None
    assert salted["_id"] != same["_id"]


def test_store_outage_loses_nothing_up_to_the_buffer_bound() -> None:
    repo = FlakyRepository(failures=3)
    sleeps = Sleeps()

    async def scenario() -> tuple[list[str], AuditLog]:
        log = AuditLog(config(), repo, EMBEDDED, sleep=sleeps)
        ids = record_many(log, 10)  # exactly buffer_size
        await wait_until_written(log, 10)
        await log.close()
        return ids, log

    ids, log = run(scenario())
    assert log.dropped == 0
    assert repo.count() == 10 and all(repo.get(i) is not None for i in ids)
    assert repo.write_calls >= 3 + 3  # three failures, then 10 rows in batches of <= 4
    # Exponential backoff between the failed attempts, capped by retry_backoff_max_s.
    assert sleeps.delays[:3] == [0.5, 1.0, 2.0]
    assert log.last_error is None and log.buffered == 0


def test_overflow_drops_exactly_the_newest_and_counts_them() -> None:
    # A full queue refuses the newcomer: what is queued (durably) is never given up.
    metric_counts: list[int] = []
    repo = FlakyRepository(failures=2)

    async def scenario() -> tuple[list[str], AuditLog]:
        log = AuditLog(config(), repo, EMBEDDED, sleep=Sleeps(), on_dropped=metric_counts.append)
        ids = record_many(log, 13)  # buffer_size 10: three too many
        await wait_until_written(log, 10)
        await log.close()
        return ids, log

    ids, log = run(scenario())
    assert log.dropped == 3 and sum(metric_counts) == 3
    assert log.status()["dropped"] == 3
    assert all(repo.get(i) is not None for i in ids[:10])
    assert all(repo.get(i) is None for i in ids[10:])
    assert repo.count() == 10


def test_review_of_a_buffered_decision_writes_it_first() -> None:
    repo = repository()

    async def scenario() -> tuple[dict[str, Any] | None, dict[str, Any] | None, AuditLog]:
        log = AuditLog(config(flush_interval_s=3600), repo, EMBEDDED)
        decision_id = record_many(log, 1)[0]
        found = await log.get(decision_id)  # from the buffer: nothing written yet
        assert repo.count() == 0 and found is not None and found["_id"] == decision_id
        reviewed = await log.review(decision_id, {"verdict": "reject", "labels": None})
        await log.close()
        return found, reviewed, log

    _, reviewed, log = run(scenario())
    assert reviewed is not None and reviewed["review"]["verdict"] == "reject"
    assert repo.get(reviewed["_id"])["review"] == {"verdict": "reject", "labels": None}  # type: ignore[index]
    assert log.buffered == 0


def test_review_of_an_unknown_decision_is_none_and_store_down_raises() -> None:
    async def scenario() -> None:
        log = AuditLog(config(), repository(), EMBEDDED)
        assert await log.review("0" * 32, {"verdict": "approve"}) is None
        assert await log.get("0" * 32) is None

        down = FlakyRepository(failures=100)
        outage = AuditLog(config(flush_interval_s=3600), down, EMBEDDED)
        decision_id = record_many(outage, 1)[0]
        with pytest.raises(AuditStoreError):
            await outage.review(decision_id, {"verdict": "approve"})
        assert outage.buffered == 1  # still kept for a later write
        await log.close()
        await outage.close()

    run(scenario())


def test_retried_batch_already_written_is_not_an_error() -> None:
    repo = repository()
    documents = [decision_document(result(), TEXT, "text", config()) for _ in range(3)]
    repo.insert_many(documents[:2])
    repo.insert_many(documents)  # the first two are duplicates: skipped
    assert repo.count() == 3


def test_config_rejects_a_batch_larger_than_the_buffer() -> None:
    with pytest.raises(ValidationError, match="max_batch"):
        AuditConfig(buffer_size=10, max_batch=20)
    assert IngressConfig().audit.store_text is False
    assert IngressConfig.model_validate({"audit": {"store_text": True}}).audit.store_text
