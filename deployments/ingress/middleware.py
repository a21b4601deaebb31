"""The guard in front of every route: the API key, then the body size limit.

Every path needs a valid key except liveness and the docs (``auth.PUBLIC_PATHS``, matched on
the path inside the app, whatever ``route_prefix`` Serve mounts it under). Both checks run
before any body is parsed, so a wrong key is 401, never a 422 about the body. The body is read
here (up to the limit) and replayed to the app, so an oversized or endless chunked body is
refused with 413 without being held in memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

from deployments.ingress.auth import (
    API_KEY_HEADER,
    ApiKeys,
    AuthError,
    KeyIdentity,
    is_public,
    route_path,
    store_identity,
)
from deployments.ingress.errors import domain_error_response, error_response
from deployments.ingress.state import IngressState
from deployments.metrics import record_api_request
from models.exceptions import PayloadTooLargeError

__all__ = ["API_KEY_HEADER", "GuardMiddleware", "body_limit_bytes", "key_refusal"]

# Routes that take whole images in the body (base64 or multipart): their own, larger limit.
IMAGE_BODY_PATHS = ("/api/v1/moderation/image", "/api/v1/image/")
_KEY_HEADER = API_KEY_HEADER.lower().encode("latin-1")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def auth_error_response(error: AuthError) -> JSONResponse:
    """The JSON answer to a refused key: 401 or 403, naming the X-API-Key header."""
    return error_response(error.status, error.code, error.message, error.field)


def authenticate(api_keys: ApiKeys, headers: dict[bytes, bytes]) -> KeyIdentity:
    """The identity of the request's key; AuthError 401 when it is missing or wrong."""
    raw = headers.get(_KEY_HEADER)
    return api_keys.check(None if raw is None else raw.decode("latin-1"))


def key_refusal(api_keys: ApiKeys, headers: dict[bytes, bytes]) -> JSONResponse | None:
    """401 without a key or with a wrong one, None when the key is accepted."""
    try:
        authenticate(api_keys, headers)
    except AuthError as error:
        return auth_error_response(error)
    return None


def body_limit_bytes(state: IngressState, path: str) -> int:
    """The body size limit of ``path`` (inside the app): ``max_image_body_bytes`` on image
    routes."""
    limits = state.config.limits
    if path.startswith(IMAGE_BODY_PATHS):
        return limits.max_image_body_bytes
    return limits.max_body_bytes


class GuardMiddleware:
    """API keys and the body size limit of the replica's live config."""

    def __init__(self, app: ASGIApp, state: IngressState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):  # lifespan: start-up and shutdown
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if not is_public(scope):
            try:
                identity = authenticate(self.state.api_keys, headers)
            except AuthError as error:
                # By outcome only: a wrong key's id would let callers mint label values.
                record_api_request(None, error.code)
                if kind == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                else:
                    await auth_error_response(error)(scope, receive, send)
                return
            store_identity(scope, identity)
            record_api_request(identity.key_id, "accepted")
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        limit = body_limit_bytes(self.state, route_path(scope))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(scope, receive, send, int(declared), limit)
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
                await _too_large(scope, receive, send, None, limit)
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


async def _too_large(
    scope: Scope, receive: Receive, send: Send, size: int | None, limit: int
) -> None:
    response = domain_error_response(PayloadTooLargeError(size, limit))
    await response(scope, receive, send)
