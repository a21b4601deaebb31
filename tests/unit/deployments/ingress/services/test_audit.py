"""Recording the ingress's moderation answers in the audit log (``services/audit.py``, no Ray)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

import mongomock

from configs.audit import AuditConfig
from deployments.ingress.schemas.common import ModelRef
from deployments.ingress.schemas.moderation import ModerationResult
from deployments.ingress.services.audit import audit_results, audit_status, audited
from storage.audit_log import (
    AuditLog,
    DecisionRepository,
    StoreInfo,
    content_hash,
    is_decision_id,
)
from tests.unit.deployments.ingress.fakes import fake_state

T = TypeVar("T")
EMBEDDED = StoreInfo("embedded (test)", False)
TEXT = "you are a lovely person"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def result(action: str = "flag_for_review", offensive: float = 0.7) -> ModerationResult:
    return ModerationResult(
        is_safe=action == "approve",
        action=action,  # type: ignore[arg-type]
        scores={"offensive": offensive},
        overall=offensive,
        flagged_categories=["offensive"] if action != "approve" else [],
        model=ModelRef(name="alt-profanity-check", version="1.2", device="cpu"),
        degraded=False,
    )


def repository() -> DecisionRepository:
    return DecisionRepository(mongomock.MongoClient(tz_aware=True)["test"])


class Sleeps:
    """Records backoff delays instead of waiting them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)
        await asyncio.sleep(0)


def config(**overrides: Any) -> AuditConfig:
    values: dict[str, Any] = {
        "buffer_size": 10,
        "max_batch": 4,
        "flush_interval_s": 0.01,
        "retry_backoff_s": 0.5,
        "retry_backoff_max_s": 2.0,
    }
    return AuditConfig(**{**values, **overrides})


async def wait_until_written(log: AuditLog, count: int) -> None:
    for _ in range(2000):
        if log.written >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"only {log.written} of {count} decisions written")


def test_decisions_land_in_the_store_with_every_field_and_no_text() -> None:
    repo = repository()

    async def scenario() -> list[ModerationResult]:
        log = AuditLog(config(), repo, EMBEDDED)
        stamped = audit_results(log, "text", [TEXT], [result()], user_id="user-42")
        await wait_until_written(log, 1)  # the background writer, not an explicit flush
        await log.close()
        return stamped

    stamped = run(scenario())
    decision_id = stamped[0].decision_id
    assert decision_id is not None and is_decision_id(decision_id)
    stored = repo.get(decision_id)
    assert stored is not None
    assert stored["content_hash"] == content_hash(TEXT) != TEXT
    assert stored["scores"] == {"offensive": 0.7}
    assert stored["action"] == "flag_for_review"
    assert stored["flagged_categories"] == ["offensive"]
    assert stored["model"] == {"name": "alt-profanity-check", "version": "1.2"}
    assert stored["degraded"] is False
    assert stored["route"] == "text"
    assert isinstance(stored["created_at"], datetime)
    assert "request_id" in stored  # None outside a Serve replica
    assert stored["user_id_hash"] and "user-42" not in stored["user_id_hash"]
    assert "text" not in stored
    assert TEXT not in repr(stored)


def test_text_is_stored_only_with_store_text() -> None:
    repo = repository()

    async def scenario() -> list[ModerationResult]:
        log = AuditLog(config(store_text=True), repo, EMBEDDED)
        stamped = audit_results(log, "batch", [TEXT, "second"], [result(), result("approve")])
        await log.flush()
        await log.close()
        return stamped

    stamped = run(scenario())
    assert [repo.get(str(r.decision_id))["text"] for r in stamped] == [TEXT, "second"]  # type: ignore[index]


def test_a_failing_store_never_raises_into_the_caller() -> None:
    def broken_factory() -> DecisionRepository:
        raise ConnectionError("no server")

    async def scenario() -> tuple[list[ModerationResult], AuditLog]:
        log = AuditLog(config(), broken_factory, EMBEDDED, sleep=Sleeps())
        stamped = audit_results(log, "text", [TEXT], [result()])
        for _ in range(5):
            await asyncio.sleep(0.02)  # let the writer fail a few times
        await log.close()
        return stamped, log

    stamped, log = run(scenario())
    assert stamped[0].decision_id is not None  # the answer still carries its id
    assert log.last_error == "ConnectionError"
    assert log.buffered == 1 and log.dropped == 0  # kept for the next attempt


def test_audit_results_survives_a_broken_log() -> None:
    class BrokenLog(AuditLog):
        def record(self, document: dict[str, Any]) -> None:
            raise RuntimeError("bug")

    log = BrokenLog(config(), repository(), EMBEDDED)
    answers = [result()]
    assert audit_results(log, "text", [TEXT], answers) == answers
    assert audit_results(None, "text", [TEXT], answers)[0].decision_id is None


def test_the_state_records_only_while_the_audit_log_is_on() -> None:
    on = fake_state()
    off = fake_state(config={"audit": {"enabled": False}})

    async def scenario() -> list[ModerationResult]:
        stamped = audited(on, "text", [TEXT], [result()], user_id="user-42")
        await on.audit_log.close()
        return stamped

    stamped = run(scenario())
    assert stamped[0].decision_id is not None and on.audit_log.buffered == 1
    assert audited(off, "text", [TEXT], [result()])[0].decision_id is None
    assert off.audit_log.buffered == 0
    assert audit_status(off) == {"enabled": False}
    assert audit_status(on)["enabled"] is True and audit_status(on)["buffered"] == 1
