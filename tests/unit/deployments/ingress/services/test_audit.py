"""Recording the ingress's moderation answers in the audit log (``services/audit.py``, no Ray)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from deployments.ingress.schemas.common import ModelRef
from deployments.ingress.schemas.moderation import ModerationResult
from deployments.ingress.services.audit import audit_results, audit_status, audited
from storage.audit_log import (
    AuditLog,
    DecisionRepository,
    content_hash,
    is_decision_id,
)
from tests.fixtures.audit import EMBEDDED, TEXT, Sleeps, config, repository, run, wait_until_written
from tests.unit.deployments.ingress.fakes import fake_state


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
