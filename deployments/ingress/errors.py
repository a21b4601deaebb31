"""Domain errors to HTTP answers: the one place that knows status codes.

Every failure answers ``{"error": {code, message, field}}`` (``ErrorBody``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.ingress.auth import AuthError
from deployments.ingress.schemas.common import ErrorBody
from models.exceptions import (
    FeatureNotEnabledError,
    ImageInputError,
    InvalidInputError,
    NodeUnavailableError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
)
from storage.audit_log import AuditStoreError

logger = logging.getLogger("ray.serve")


# When a node's queue is full and Ray's error carries no delay of its own.
DEFAULT_RETRY_AFTER_S = 1.0


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The JSON error body every failure uses: ``{"error": {code, message, field}}``."""
    body = ErrorBody.model_validate({"error": {"code": code, "message": message, "field": field}})
    return JSONResponse(status_code=status, content=body.model_dump(), headers=headers)


def retry_after_header(retry_after_s: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds (RFC 9110), rounded up and at least 1, so a client
    that honours it never comes back before the delay (and never at once)."""
    return {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


def overloaded_response(exc: OverloadedError) -> JSONResponse:
    """503 with ``Retry-After``: the request was shed, nothing was processed."""
    return error_response(
        503, "overloaded", exc.message, headers=retry_after_header(exc.retry_after_s)
    )


def back_pressure_error(
    exc: BackPressureError, default_retry_after_s: float = DEFAULT_RETRY_AFTER_S
) -> OverloadedError:
    """Ray's full-queue error of a handle call as the domain error (no request data in it);
    its ``retry_after_s`` (the node's ``backpressure_config``) when set, else the default."""
    retry_after_s = getattr(exc, "retry_after_s", None)
    return OverloadedError(
        "a node's request queue is full (max_queued_requests); nothing was processed, retry "
        "after the Retry-After delay",
        default_retry_after_s if retry_after_s is None else float(retry_after_s),
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p != "body"]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return error_response(400, "invalid_json", "the body is not valid JSON", "body")
    field_name = _field_name(tuple(first.get("loc", ("body",))))
    if first.get("type") == "missing":
        message = f"{field_name} is required"
    else:
        message = f"{field_name}: {first.get('msg', 'invalid value')}"
    return error_response(422, "invalid_field", message, field_name)


def domain_error_response(exc: Exception) -> JSONResponse:
    """The HTTP answer to a domain error (``DOMAIN_ERRORS``); anything else is a 500."""
    if isinstance(exc, (ImageInputError, AuthError)):
        return error_response(exc.status, exc.code, exc.message, exc.field)
    if isinstance(exc, InvalidInputError):
        code = "feature_not_enabled" if isinstance(exc, FeatureNotEnabledError) else "invalid_field"
        return error_response(422, code, exc.message, exc.field)
    if isinstance(exc, PayloadTooLargeError):
        return error_response(413, "payload_too_large", str(exc), "body")
    if isinstance(exc, NotFoundError):
        return error_response(404, exc.code, exc.message, exc.field)
    if isinstance(exc, OverloadedError):
        return overloaded_response(exc)
    if isinstance(exc, BackPressureError):
        return overloaded_response(back_pressure_error(exc))
    if isinstance(exc, NodeUnavailableError):
        return error_response(503, exc.code, exc.message)
    if isinstance(exc, AuditStoreError):
        return error_response(503, "audit_store_unavailable", f"{exc}; retry later")
    return _internal_error()


DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    AuthError,
    InvalidInputError,
    PayloadTooLargeError,
    NotFoundError,
    NodeUnavailableError,
    OverloadedError,
    BackPressureError,
    AuditStoreError,
)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    return domain_error_response(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, "http_error", str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The route template, not the path (paths carry user and post ids), and the error's type,
    # not its message (messages can quote the request); the traceback only at DEBUG.
    route = getattr(request.scope.get("route"), "path", "an unmatched path")
    logger.error("unhandled error on %s (%s)", route, type(exc).__name__)
    logger.debug("traceback of the unhandled error", exc_info=exc)
    return _internal_error()


def _internal_error() -> JSONResponse:
    return error_response(500, "internal_error", "internal error; the request was not processed")


def add_exception_handlers(app: FastAPI) -> None:
    """Map request validation, domain errors and anything unexpected to ``ErrorBody``."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error_type in DOMAIN_ERRORS:
        app.add_exception_handler(error_type, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
