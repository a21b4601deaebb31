"""Recording moderation answers in the replica's audit log (``state.audit_log``).

Recorded where an answer leaves the ingress (HTTP routes and the gRPC method), so every
answer a client sees is logged exactly once. ``storage/audit_log.py`` is the store itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from ray.serve.context import _get_serve_request_context

from deployments.ingress.schemas.moderation import ModerationResult
from deployments.ingress.state import IngressState
from storage.audit_log import AuditLog, decision_document

logger = logging.getLogger("ray.serve")

ResultT = TypeVar("ResultT", bound=ModerationResult)


def current_request_id() -> str | None:
    """Ray Serve's id of the request being handled (its ``X-Request-ID``), if any."""
    try:
        return _get_serve_request_context().request_id or None
    except Exception:  # noqa: BLE001 - outside a replica there is simply no request id
        return None


def audit_results(
    log: AuditLog | None,
    route: str,
    texts: Iterable[str],
    results: Sequence[ResultT],
    *,
    user_id: str | None = None,
) -> list[ResultT]:
    """Record one decision per (text, result) and return the results with their ``decision_id``.

    ``log`` None (audit off) returns the results unchanged. Never raises.
    """
    if log is None:
        return list(results)
    try:
        request_id = current_request_id()
        stamped: list[ResultT] = []
        for text, result in zip(texts, results, strict=True):
            document = decision_document(
                result, text, route, log.config, user_id=user_id, request_id=request_id
            )
            log.record(document)
            stamped.append(result.model_copy(update={"decision_id": document["_id"]}))
        return stamped
    except Exception as exc:  # noqa: BLE001 - the audit log must never fail a request
        logger.error("audit of %s failed (%s)", route, type(exc).__name__)
        return list(results)


def audited(
    state: IngressState,
    route: str,
    texts: Iterable[str],
    results: Sequence[ResultT],
    user_id: str | None = None,
) -> list[ResultT]:
    """The results with their ``decision_id``, each recorded in the replica's audit log."""
    return audit_results(state.audit(), route, texts, results, user_id=user_id)


def audit_status(state: IngressState) -> dict[str, Any]:
    """What /health shows about the audit log (``{"enabled": false}`` when off)."""
    log = state.audit()
    if log is None:
        return {"enabled": False}
    return log.status()
