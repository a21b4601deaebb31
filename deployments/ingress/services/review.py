"""Recorded moderation decisions and moderator reviews of them.

Decisions live in this replica's audit log (``state.audit_log``, over
``storage/audit_log.py``): MongoDB when ``MONGODB_URL`` is set, else an in-process store of
this replica only. Reviews become training labels (``pipelines/review_labels.py``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from deployments.ingress.auth import MODERATOR_SCOPE, KeyIdentity, require_scope
from deployments.ingress.schemas.review import DecisionRecord, ReviewRequest
from deployments.ingress.state import IngressState
from models.exceptions import FeatureNotEnabledError, InvalidInputError, NotFoundError
from storage.audit_log import AuditLog, hash_id, is_decision_id

logger = logging.getLogger("ray.serve")


def check_decision_id(decision_id: str) -> str:
    """``decision_id`` when it is 32 lowercase hex characters, else 422 naming it."""
    if not is_decision_id(decision_id):
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


def _audit_log(state: IngressState) -> AuditLog:
    log = state.audit()
    if log is None:
        raise FeatureNotEnabledError(
            "audit", "the audit log is off (audit.enabled: false); no decision is recorded"
        )
    return log


def _not_found(decision_id: str) -> NotFoundError:
    return NotFoundError(
        "decision_id",
        f"no moderation decision {decision_id} in this service's audit log (with the "
        "embedded store, decisions are kept per ingress replica and lost on restart)",
        "decision_not_found",
    )


async def get_decision(state: IngressState, decision_id: str) -> DecisionRecord:
    """A recorded decision and its review, if any; AuditStoreError when the store is down."""
    decision_id = check_decision_id(decision_id)
    log = _audit_log(state)
    stored = log.buffered_document(decision_id) is None
    document = await log.get(decision_id)
    if document is None:
        raise _not_found(decision_id)
    return decision_record(document, stored)


async def review_decision(
    state: IngressState, decision_id: str, review: ReviewRequest, key: KeyIdentity
) -> DecisionRecord:
    """Record a moderator's verdict (and per-category labels) on a decision.

    Only a key with the moderator scope may (AuthError 403 otherwise): reviews become training
    labels. A later review of the same decision replaces the earlier one.
    """
    require_scope(key, MODERATOR_SCOPE)
    decision_id = check_decision_id(decision_id)
    log = _audit_log(state)
    limit = log.config.max_note_chars
    if review.note is not None and len(review.note) > limit:
        raise InvalidInputError(
            "note", f"note has {len(review.note)} characters; the limit is {limit}"
        )
    stored_review = {
        "verdict": review.verdict,
        "labels": review.labels,
        "reviewer_id_hash": hash_id(review.reviewer_id, log.config.user_id_salt),
        "note": review.note,
        "reviewed_at": datetime.now(UTC),
    }
    document = await log.review(decision_id, stored_review)
    if document is None:
        raise _not_found(decision_id)
    # Which key reviewed, by its id: the key itself never reaches a log.
    logger.info("moderation review recorded by key %s", key.key_id)
    return decision_record(document, stored=True)
