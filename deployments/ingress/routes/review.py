"""Moderator routes of the ingress: look up a recorded moderation decision and review it.

Decisions live in this replica's audit log (``storage/audit_log.py``): MongoDB when
``MONGODB_URL`` is set, else an in-process store of this replica only. Reviews become
training labels (``pipelines/review_labels.py``).
"""

from datetime import UTC, datetime
from typing import Any

from fastapi import Depends

from deployments.ingress.http import app, error_response, require_api_key
from deployments.ingress.routes.base import RouteGroup
from deployments.ingress.schemas.review import DecisionRecord, ReviewRequest
from models.exceptions import FeatureNotEnabledError, InvalidInputError
from storage import audit_log

_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No decision with this id (decision_not_found)."},
    503: {"description": "The decision store is unavailable; retry."},
}


def check_decision_id(decision_id: str) -> str:
    """``decision_id`` when it is 32 lowercase hex characters, else 422 naming it."""
    if not audit_log.is_decision_id(decision_id):
        raise InvalidInputError(
            "decision_id",
            "decision_id must be the 32 lowercase hex characters a moderation response "
            "returned as decision_id",
        )
    return decision_id


def decision_record(document: dict[str, Any], stored: bool) -> DecisionRecord:
    """The response form of a stored decision document."""
    fields = {key: value for key, value in document.items() if key != "_id"}
    return DecisionRecord(decision_id=document["_id"], stored=stored, **fields)


def _not_found(decision_id: str) -> Any:
    return error_response(
        404,
        "decision_not_found",
        f"no moderation decision {decision_id} in this service's audit log (with the "
        "embedded store, decisions are kept per ingress replica and lost on restart)",
        "decision_id",
    )


def _store_down(exc: audit_log.AuditStoreError) -> Any:
    return error_response(503, "audit_store_unavailable", f"{exc}; retry later")


class ReviewRoutes(RouteGroup):
    """Recorded moderation decisions and moderator reviews."""

    def _audit_log(self) -> audit_log.AuditLog:
        log = audit_log.replica_audit_log(self.config.audit)
        if log is None:
            raise FeatureNotEnabledError(
                "audit", "the audit log is off (audit.enabled: false); no decision is recorded"
            )
        return log

    @app.get(
        "/api/v1/moderation/decisions/{decision_id}",
        response_model=DecisionRecord,
        tags=["Moderation"],
        dependencies=[Depends(require_api_key)],
        responses=_RESPONSES,
    )
    async def get_decision(self, decision_id: str) -> Any:
        """A recorded moderation decision and its review, if any (for moderators)."""
        decision_id = check_decision_id(decision_id)
        log = self._audit_log()
        stored = log.buffered_document(decision_id) is None
        try:
            document = await log.get(decision_id)
        except audit_log.AuditStoreError as exc:
            return _store_down(exc)
        if document is None:
            return _not_found(decision_id)
        return decision_record(document, stored)

    @app.post(
        "/api/v1/moderation/{decision_id}/review",
        response_model=DecisionRecord,
        tags=["Moderation"],
        dependencies=[Depends(require_api_key)],
        responses=_RESPONSES,
    )
    async def review_decision(self, decision_id: str, body: ReviewRequest) -> Any:
        """Record a moderator's verdict (and per-category labels) on a decision.

        A later review of the same decision replaces the earlier one.
        """
        decision_id = check_decision_id(decision_id)
        log = self._audit_log()
        limit = log.config.max_note_chars
        if body.note is not None and len(body.note) > limit:
            raise InvalidInputError(
                "note", f"note has {len(body.note)} characters; the limit is {limit}"
            )
        review = {
            "verdict": body.verdict,
            "labels": body.labels,
            "reviewer_id_hash": audit_log.hash_id(body.reviewer_id, log.config.user_id_salt),
            "note": body.note,
            "reviewed_at": datetime.now(UTC),
        }
        try:
            document = await log.review(decision_id, review)
        except audit_log.AuditStoreError as exc:
            return _store_down(exc)
        if document is None:
            return _not_found(decision_id)
        return decision_record(document, stored=True)
