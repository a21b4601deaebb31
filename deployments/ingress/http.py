"""The ingress's FastAPI app: API keys, body limits, CORS, error mapping, shared helpers.

Route groups live in ``routes_*.py`` as mixins of the ``Ingress`` deployment
(``deployments/ingress/deployment.py``); this module holds what they share. Domain errors are
mapped to HTTP errors here and nowhere else.

No ``from __future__ import annotations`` in the route modules: ``serve.ingress`` pickles the
app, and FastAPI must see real annotation objects, not strings, in the replica.
"""

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import metadata
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from configs.settings import get_settings
from deployments.coalesce import CallCoalescer
from deployments.ingress import state as ingress_state
from deployments.ingress.circuit import CircuitOpenError
from deployments.ingress.schemas.common import ErrorBody
from deployments.metrics import record_degraded, record_node_call
from models.answers import Answer
from models.exceptions import (
    FeatureNotEnabledError,
    ImageInputError,
    InvalidInputError,
    PayloadTooLargeError,
)

logger = logging.getLogger("ray.serve")

API_KEY_HEADER = "X-API-Key"
PROTECTED_PREFIX = "/api/"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    """The JSON error body every failure uses: ``{"error": {code, message, field}}``."""
    body = ErrorBody.model_validate({"error": {"code": code, "message": message, "field": field}})
    return JSONResponse(status_code=status, content=body.model_dump())


def _key_matches(candidate: str) -> bool:
    # compare_digest against every key, without an early exit, so timing says nothing
    # about which key (or how much of one) matched.
    supplied = candidate.encode("utf-8")
    matched = False
    for key in ingress_state.STATE.api_keys:
        matched |= hmac.compare_digest(supplied, key)
    return matched


def api_key_valid(candidate: str) -> bool:
    """Whether ``candidate`` is one of the configured API keys (gRPC metadata uses it too)."""
    return _key_matches(candidate)


def _auth_failure(headers: dict[bytes, bytes]) -> JSONResponse | None:
    raw = headers.get(API_KEY_HEADER.lower().encode("latin-1"))
    if raw is None or not raw.strip():
        return error_response(
            401,
            "missing_api_key",
            f"send your API key in the {API_KEY_HEADER} header",
            API_KEY_HEADER,
        )
    if not _key_matches(raw.decode("latin-1").strip()):
        return error_response(403, "invalid_api_key", "the API key is not valid", API_KEY_HEADER)
    return None


# Routes that take whole images in the body (base64 or multipart): their own, larger limit.
IMAGE_BODY_PATHS = ("/api/v1/moderation/image", "/api/v1/image/")


def body_limit_bytes(path: str) -> int:
    """The body size limit of ``path``: ``max_image_body_bytes`` on image routes."""
    limits = ingress_state.STATE.config.limits
    if path.startswith(IMAGE_BODY_PATHS):
        return limits.max_image_body_bytes
    return limits.max_body_bytes


class GuardMiddleware:
    """API keys and the body size limit, enforced before any body is parsed.

    The body is read here (up to the limit) and replayed to the app, so an oversized or
    endless chunked body is refused with 413 without being held in memory.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        refusal = _auth_failure(headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        limit = body_limit_bytes(scope["path"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, int(declared), limit)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, None, limit)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(
        scope: Scope, receive: Receive, send: Send, size: int | None, limit: int
    ) -> None:
        error = PayloadTooLargeError(size, limit)
        await error_response(413, "payload_too_large", str(error), "body")(scope, receive, send)


app = FastAPI(
    title="SocialPlay AI",
    version="0.1.0",
    description="Moderation, sentiment and more for a social network, served by Ray Serve.",
    responses={
        401: {"model": ErrorBody, "description": "Missing API key."},
        403: {"model": ErrorBody, "description": "Wrong API key."},
        413: {"model": ErrorBody, "description": "Body over the limit."},
        422: {"model": ErrorBody, "description": "Invalid field."},
    },
)


class ReplicaCORSMiddleware:
    """CORS with origins from the replica's own environment (ALLOWED_ORIGINS).

    Built on first use: the app object is pickled in the process that deploys it, whose
    environment is not the replica's.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._cors is None:
            self._cors = CORSMiddleware(
                self.app,
                allow_origins=get_settings().origins(),
                allow_methods=["GET", "POST"],
                allow_headers=[API_KEY_HEADER, "Content-Type"],
            )
        await self._cors(scope, receive, send)


app.add_middleware(GuardMiddleware)
# Added last so it is outermost: CORS preflight requests carry no API key.
app.add_middleware(ReplicaCORSMiddleware)

_api_key_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def require_api_key(key: str | None = Depends(_api_key_scheme)) -> str:
    """Documents the key in OpenAPI; GuardMiddleware has already enforced it."""
    return key or ""


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p != "body"]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
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


@app.exception_handler(InvalidInputError)
async def _invalid_input(request: Request, exc: InvalidInputError) -> JSONResponse:
    if isinstance(exc, ImageInputError):
        return error_response(exc.status, exc.code, exc.message, exc.field)
    code = "feature_not_enabled" if isinstance(exc, FeatureNotEnabledError) else "invalid_field"
    return error_response(422, code, exc.message, exc.field)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return error_response(exc.status_code, "http_error", str(exc.detail))


@app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The route template, not the path (paths carry user and post ids), and the error's type,
    # not its message (messages can quote the request); the traceback only at DEBUG.
    route = getattr(request.scope.get("route"), "path", "an unmatched path")
    logger.error("unhandled error on %s (%s)", route, type(exc).__name__)
    logger.debug("traceback of the unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; the request was not processed")


async def _await_response(response: Any) -> Any:
    return await response


def node_name(method: Any) -> str:
    """The deployment name behind a handle or method handle (``handle.predict``)."""
    return str(getattr(method, "deployment_name", None) or "unknown")


def result_version(result: Any) -> str:
    """``model.version`` of a node's answer (or of the first of a list of answers)."""
    if isinstance(result, list) and result:
        result = result[0]
    if isinstance(result, Answer) and result.model.version:
        return result.model.version
    return "unknown"


async def call_node(method: Any, timeout_s: float, *args: Any, guarded: bool = True) -> Any:
    """One handle call with a timeout; the request is cancelled on the node when it expires.

    ``guarded`` calls go through the node's circuit breaker (``CircuitOpenError`` without a
    call while it is open) and are counted in the node metrics; /health calls are not, so a
    health probe neither trips nor closes a breaker.
    """
    if not guarded:
        return await _call(method, timeout_s, args)
    node = node_name(method)
    settings = ingress_state.STATE.config.circuit_breaker
    breaker = ingress_state.STATE.breakers.get(node) if settings.enabled else None
    ticket = breaker.before_call(settings, time.monotonic()) if breaker is not None else None
    started = time.perf_counter()
    outcome: bool | None = None
    result: Any = None
    try:
        result = await _call(method, timeout_s, args)
        outcome = True
        return result
    except InvalidInputError:
        # The node answered and refused the input: it is healthy.
        outcome = True
        raise
    except Exception:
        outcome = False
        raise
    finally:
        if outcome is not None:
            record_node_call(node, result_version(result), time.perf_counter() - started, outcome)
        if breaker is not None and ticket is not None:
            if outcome is None:  # cancelled: no verdict on the node
                breaker.on_abandoned(ticket)
            elif outcome:
                breaker.on_success(ticket, time.monotonic())
            else:
                breaker.on_failure(ticket, settings, time.monotonic())


async def call_node_one(handle: Any, timeout_s: float, item: Any) -> Any:
    """One item's answer from a model node, waiting at most `timeout_s` in all.

    With ``coalesce`` on (the default), concurrent items for the same node share one
    ``predict_many`` call (breaker, timeout and metrics apply to that call, as to any
    ``call_node``); off, this is ``call_node(handle.predict, ...)``. Either way the caller
    sees the node's answer for its item or the exception its call raised.
    """
    settings = ingress_state.STATE.config.coalesce
    if not settings.enabled:
        return await call_node(handle.predict, timeout_s, item)
    # Keyed by the handle's deployment: no method handle is built per request.
    key = f"{node_name(handle)}|{timeout_s}"
    coalescers = ingress_state.STATE.coalescers
    coalescer = coalescers.get(key)
    if coalescer is None:
        method = handle.predict_many

        async def bulk_call(items: list[Any]) -> Any:
            return await call_node(method, timeout_s, items)

        coalescer = coalescers[key] = CallCoalescer(
            bulk_call,
            settings.max_batch_size,
            settings.batch_wait_timeout_s,
            settings.max_concurrent_batches,
        )
    # The wait for a free batch slot counts against the same timeout as the call itself.
    return await asyncio.wait_for(coalescer.submit(item), timeout=timeout_s)


def coalescer_stats() -> dict[str, dict[str, float]]:
    """Batches and mean batch size of each node's coalescer on this replica (for /health)."""
    return {key.split("|")[0]: c.stats() for key, c in ingress_state.STATE.coalescers.items()}


async def _call(method: Any, timeout_s: float, args: tuple[Any, ...]) -> Any:
    response = method.remote(*args)
    try:
        return await asyncio.wait_for(_await_response(response), timeout=timeout_s)
    except TimeoutError:
        response.cancel()
        raise


def note_degraded(node: str, reason: str) -> None:
    """Count one answer given by a fallback instead of ``node`` (its route name, e.g.
    ``moderation``); ``reason`` is a ``failure_reason`` text, counted as one of three kinds
    ("circuit open", "timeout", "error") so the metric's labels stay few.
    """
    if reason.startswith("circuit open"):
        kind = "circuit open"
    elif reason.startswith("node timed out"):
        kind = "timeout"
    else:
        kind = "error"
    record_degraded(node, kind)


def breaker_states() -> dict[str, dict[str, object]]:
    """Each node's circuit breaker (by deployment name), for /health."""
    settings = ingress_state.STATE.config.circuit_breaker
    return ingress_state.STATE.breakers.snapshot(settings, time.monotonic())


def check_text(value: str, field_name: str) -> str:
    """The text itself, or InvalidInputError when it is blank or over ``max_text_chars``."""
    if not value.strip():
        raise InvalidInputError(field_name, f"{field_name} is empty; send some text")
    limit = ingress_state.STATE.config.limits.max_text_chars
    if len(value) > limit:
        raise InvalidInputError(
            field_name, f"{field_name} has {len(value)} characters; the limit is {limit}"
        )
    return value


def check_texts(values: list[str]) -> list[str]:
    """Texts of a batch request, each checked; the count is bounded by ``max_batch_texts``."""
    limit = ingress_state.STATE.config.limits.max_batch_texts
    if not values:
        raise InvalidInputError("texts", "texts is empty; send at least one text")
    if len(values) > limit:
        raise InvalidInputError(
            "texts", f"texts has {len(values)} items; the limit is {limit} per request"
        )
    return [check_text(v, f"texts[{i}]") for i, v in enumerate(values)]


def failure_reason(exc: BaseException) -> str:
    """Short, log-safe reason for a failed node call (no payload, no message text)."""
    if isinstance(exc, CircuitOpenError):
        return "circuit open"
    if isinstance(exc, TimeoutError):
        return "node timed out"
    return f"node failed ({type(exc).__name__})"


def model_ref(info: dict[str, Any]) -> dict[str, Any]:
    """Name, version and device out of a model's info dict."""
    return {"name": info["name"], "version": info["version"], "device": info["device"]}


def service_version() -> str:
    """Installed version of this project."""
    try:
        return metadata.version("socialplay-ai")
    except metadata.PackageNotFoundError:
        return "unknown"


def node_unavailable(
    node: str, exc: Exception, *, label: str = "", what: str = "answer", hint: str = "retry"
) -> JSONResponse:
    """503 ``<node>_unavailable`` for a route that has no fallback: the reason and what to do.

    ``label`` names the node in the message (default: ``node``); nothing about the request
    is logged.
    """
    reason = failure_reason(exc)
    logger.warning("%s unavailable (%s)", node, reason)
    return error_response(
        503, f"{node}_unavailable", f"the {label or node} could not {what} ({reason}); {hint}"
    )
