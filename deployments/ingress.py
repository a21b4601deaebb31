"""The ingress: the only HTTP surface of the graph.

It checks API keys and request limits, routes each request to one model node through its
DeploymentHandle (one hop, with a timeout), applies the moderation policy, answers from an
embedded fallback when a node fails, and alone maps domain errors to HTTP errors.

No ``from __future__ import annotations`` here: ``serve.ingress`` pickles the routes by value
and FastAPI must see real annotation objects, not strings, in the replica.
"""

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import metadata
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from configs.schemas import IngressConfig
from configs.settings import Settings, resolve_api_keys
from deployments import ingress_state
from deployments.http_schemas import (
    ErrorBody,
    ModelRef,
    ModerateRequest,
    ModerationBatchResult,
    ModerationResult,
    PostModerationResult,
    SentimentBatchResult,
    SentimentResult,
    TextBatchRequest,
    TextRequest,
)
from models.exceptions import FeatureNotEnabledError, InvalidInputError, PayloadTooLargeError
from models.policy import decide_action

logger = logging.getLogger("ray.serve")

API_KEY_HEADER = "X-API-Key"
PROTECTED_PREFIX = "/api/"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _error_body(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
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


def _auth_failure(headers: dict[bytes, bytes]) -> JSONResponse | None:
    raw = headers.get(API_KEY_HEADER.lower().encode("latin-1"))
    if raw is None or not raw.strip():
        return _error_body(
            401,
            "missing_api_key",
            f"send your API key in the {API_KEY_HEADER} header",
            API_KEY_HEADER,
        )
    if not _key_matches(raw.decode("latin-1").strip()):
        return _error_body(403, "invalid_api_key", "the API key is not valid", API_KEY_HEADER)
    return None


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
        limit = ingress_state.STATE.config.limits.max_body_bytes
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
        await _error_body(413, "payload_too_large", str(error), "body")(scope, receive, send)


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
                allow_origins=Settings().origins(),
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
        return _error_body(400, "invalid_json", "the body is not valid JSON", "body")
    field_name = _field_name(tuple(first.get("loc", ("body",))))
    if first.get("type") == "missing":
        message = f"{field_name} is required"
    else:
        message = f"{field_name}: {first.get('msg', 'invalid value')}"
    return _error_body(422, "invalid_field", message, field_name)


@app.exception_handler(InvalidInputError)
async def _invalid_input(request: Request, exc: InvalidInputError) -> JSONResponse:
    code = "feature_not_enabled" if isinstance(exc, FeatureNotEnabledError) else "invalid_field"
    return _error_body(422, code, exc.message, exc.field)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error_body(exc.status_code, "http_error", str(exc.detail))


@app.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s", request.url.path)
    return _error_body(500, "internal_error", "internal error; the request was not processed")


async def _await_response(response: Any) -> Any:
    return await response


async def _call_node(method: Any, timeout_s: float, *args: Any) -> Any:
    """One handle call with a timeout; the request is cancelled on the node when it expires."""
    response = method.remote(*args)
    try:
        return await asyncio.wait_for(_await_response(response), timeout=timeout_s)
    except TimeoutError:
        response.cancel()
        raise


def _check_text(value: str, field_name: str) -> str:
    if not value.strip():
        raise InvalidInputError(field_name, f"{field_name} is empty; send some text")
    limit = ingress_state.STATE.config.limits.max_text_chars
    if len(value) > limit:
        raise InvalidInputError(
            field_name, f"{field_name} has {len(value)} characters; the limit is {limit}"
        )
    return value


def _check_texts(values: list[str]) -> list[str]:
    limit = ingress_state.STATE.config.limits.max_batch_texts
    if not values:
        raise InvalidInputError("texts", "texts is empty; send at least one text")
    if len(values) > limit:
        raise InvalidInputError(
            "texts", f"texts has {len(values)} items; the limit is {limit} per request"
        )
    return [_check_text(v, f"texts[{i}]") for i, v in enumerate(values)]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "node timed out"
    return f"node failed ({type(exc).__name__})"


def _load_fallback(task: str) -> Any:
    if task == "moderation":
        from models.moderation import ProfanityModerator

        return ProfanityModerator.load()
    from models.sentiment import VaderSentiment

    return VaderSentiment.load()


def _model_ref(info: dict[str, Any]) -> dict[str, Any]:
    return {"name": info["name"], "version": info["version"], "device": info["device"]}


def _service_version() -> str:
    try:
        return metadata.version("socialplay-ai")
    except metadata.PackageNotFoundError:
        return "unknown"


@serve.deployment(name="Ingress", max_ongoing_requests=256)
@serve.ingress(app)
class Ingress:
    """HTTP front of the graph; one handle per model node."""

    def __init__(self, moderation: DeploymentHandle[Any], sentiment: DeploymentHandle[Any]) -> None:
        settings = Settings()
        keys = resolve_api_keys(settings)
        ingress_state.STATE.api_keys = [k.encode("utf-8") for k in keys]
        ingress_state.STATE.key_mode = "configured" if settings.configured_keys() else "development"
        self.moderation = moderation
        self.sentiment = sentiment
        # Embedded defaults, loaded on first use: they answer when a node cannot.
        self._fallbacks: dict[str, Any] = {}
        self._fallback_lock = asyncio.Lock()

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Apply limits, timeouts and moderation thresholds without a restart."""
        ingress_state.STATE.config = IngressConfig.model_validate(user_config or {})

    @property
    def config(self) -> IngressConfig:
        return ingress_state.STATE.config

    # ---- health -------------------------------------------------------------------------
    @app.get("/health", tags=["Service"])
    async def health(self) -> dict[str, Any]:
        """Each node's model, version, device and batching; no API key needed."""
        nodes: dict[str, Any] = {}
        for name, handle in (("moderation", self.moderation), ("sentiment", self.sentiment)):
            try:
                info = await _call_node(handle.info, self.config.timeouts.health_s)
                nodes[name] = {"status": "ok", **info}
            except Exception as exc:  # a broken node must not break /health
                nodes[name] = {"status": "unavailable", "reason": _reason(exc)}
        healthy = all(node["status"] == "ok" for node in nodes.values())
        return {
            "status": "ok" if healthy else "degraded",
            "service_version": _service_version(),
            "api_keys": ingress_state.STATE.key_mode,
            "nodes": nodes,
        }

    # ---- moderation ---------------------------------------------------------------------
    @app.post(
        "/api/v1/moderation/text",
        response_model=ModerationResult,
        tags=["Moderation"],
        dependencies=[Depends(require_api_key)],
    )
    async def moderate_text(self, body: TextRequest) -> ModerationResult:
        """Moderate one text: action, per-category scores and the model that answered."""
        text = _check_text(body.text, "text")
        return (await self._moderate([text]))[0]

    @app.post(
        "/api/v1/moderation/batch",
        response_model=ModerationBatchResult,
        tags=["Moderation"],
        dependencies=[Depends(require_api_key)],
    )
    async def moderate_batch(self, body: TextBatchRequest) -> ModerationBatchResult:
        """Moderate up to `max_batch_texts` texts in one request."""
        return ModerationBatchResult(results=await self._moderate(_check_texts(body.texts)))

    @app.post(
        "/api/v1/moderation/moderate",
        response_model=PostModerationResult,
        tags=["Moderation"],
        dependencies=[Depends(require_api_key)],
    )
    async def moderate_post(self, body: ModerateRequest) -> PostModerationResult:
        """Moderate a post before it is published (text; images once enabled)."""
        if body.images:
            raise FeatureNotEnabledError(
                "images",
                "image moderation is not enabled in this deployment; "
                "send the post without images or enable the image nodes",
            )
        text_result = (await self._moderate([_check_text(body.content, "content")]))[0]
        return PostModerationResult(**text_result.model_dump(), text_moderation=text_result)

    async def _moderate(self, texts: list[str]) -> list[ModerationResult]:
        timeout_s = self.config.timeouts.moderation_s
        try:
            if len(texts) == 1:
                outputs = [await _call_node(self.moderation.predict, timeout_s, texts[0])]
            else:
                outputs = await _call_node(self.moderation.predict_many, timeout_s, texts)
            return [self._verdict(o["result"], o["model"]) for o in outputs]
        except Exception as exc:  # any node failure: answer from the fallback, say so
            reason = _reason(exc)
            logger.warning("moderation node unavailable (%s); using fallback", reason)
        try:
            fallback = await self._fallback("moderation")
            scores = await asyncio.to_thread(fallback.predict_batch, texts)
            model = _model_ref(fallback.info.as_dict())
            return [self._verdict(s, model, degraded_reason=reason) for s in scores]
        except Exception as exc:  # no model at all: never approve silently
            logger.error("moderation fallback failed (%s)", type(exc).__name__)
            return [
                self._verdict({}, None, degraded_reason=f"{reason}; fallback failed") for _ in texts
            ]

    def _verdict(
        self,
        scores: dict[str, float],
        model: dict[str, Any] | None,
        degraded_reason: str | None = None,
    ) -> ModerationResult:
        policy = self.config.moderation_policy
        action, flagged = decide_action(
            scores,
            policy.category_flag_thresholds,
            policy.category_reject_thresholds,
            policy.flag_threshold,
            policy.reject_threshold,
        )
        return ModerationResult(
            is_safe=action == "approve",
            action=action,  # type: ignore[arg-type]
            scores=scores,
            overall=max(scores.values(), default=0.0),
            flagged_categories=flagged,
            model=model,  # type: ignore[arg-type]
            degraded=degraded_reason is not None,
            degraded_reason=degraded_reason,
        )

    # ---- sentiment ----------------------------------------------------------------------
    @app.post(
        "/api/v1/sentiment/analyze",
        response_model=SentimentResult,
        tags=["Sentiment"],
        dependencies=[Depends(require_api_key)],
    )
    async def analyze_sentiment(self, body: TextRequest) -> SentimentResult:
        """Sentiment of one text: label, scores per label, confidence, model."""
        return (await self._sentiment([_check_text(body.text, "text")]))[0]

    @app.post(
        "/api/v1/sentiment/batch",
        response_model=SentimentBatchResult,
        tags=["Sentiment"],
        dependencies=[Depends(require_api_key)],
    )
    async def analyze_sentiment_batch(self, body: TextBatchRequest) -> SentimentBatchResult:
        """Sentiment of up to `max_batch_texts` texts in one request."""
        return SentimentBatchResult(results=await self._sentiment(_check_texts(body.texts)))

    async def _sentiment(self, texts: list[str]) -> list[SentimentResult]:
        timeout_s = self.config.timeouts.sentiment_s
        try:
            if len(texts) == 1:
                outputs = [await _call_node(self.sentiment.predict, timeout_s, texts[0])]
            else:
                outputs = await _call_node(self.sentiment.predict_many, timeout_s, texts)
            return [
                SentimentResult(**o["result"], model=ModelRef(**o["model"]), degraded=False)
                for o in outputs
            ]
        except Exception as exc:  # any node failure: answer from the fallback, say so
            reason = _reason(exc)
            logger.warning("sentiment node unavailable (%s); using fallback", reason)
        fallback = await self._fallback("sentiment")
        results = await asyncio.to_thread(fallback.predict_batch, texts)
        model = ModelRef(**_model_ref(fallback.info.as_dict()))
        return [
            SentimentResult(**r, model=model, degraded=True, degraded_reason=reason)
            for r in results
        ]

    async def _fallback(self, task: str) -> Any:
        async with self._fallback_lock:
            if task not in self._fallbacks:
                self._fallbacks[task] = await asyncio.to_thread(_load_fallback, task)
            return self._fallbacks[task]
