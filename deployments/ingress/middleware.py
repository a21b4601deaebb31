"""The guard in front of every ``/api/`` route: the API key, then the body size limit.

Both are checked before any body is parsed. The body is read here (up to the limit) and
replayed to the app, so an oversized or endless chunked body is refused with 413 without
being held in memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

from deployments.ingress.errors import domain_error_response, error_response
from deployments.ingress.state import ApiKeys, IngressState
from models.exceptions import PayloadTooLargeError

API_KEY_HEADER = "X-API-Key"
PROTECTED_PREFIX = "/api/"
# Routes that take whole images in the body (base64 or multipart): their own, larger limit.
IMAGE_BODY_PATHS = ("/api/v1/moderation/image", "/api/v1/image/")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def key_refusal(api_keys: ApiKeys, headers: dict[bytes, bytes]) -> JSONResponse | None:
    """401 without a key, 403 with a wrong one, None when the key is accepted."""
    raw = headers.get(API_KEY_HEADER.lower().encode("latin-1"))
    if raw is None or not raw.strip():
        return error_response(
            401,
            "missing_api_key",
            f"send your API key in the {API_KEY_HEADER} header",
            API_KEY_HEADER,
        )
    if not api_keys.matches(raw.decode("latin-1").strip()):
        return error_response(403, "invalid_api_key", "the API key is not valid", API_KEY_HEADER)
    return None


def body_limit_bytes(state: IngressState, path: str) -> int:
    """The body size limit of ``path``: ``max_image_body_bytes`` on image routes."""
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
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        refusal = key_refusal(self.state.api_keys, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        limit = body_limit_bytes(self.state, scope["path"])
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
