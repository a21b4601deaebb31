"""Refuse JSON bodies nested deeper than ``MAX_JSON_DEPTH`` before any parser recurses into them.

Python's ``json`` module recurses once per array or object level; a few kilobytes of ``[`` (a
body of 5,000 nested arrays) raise ``RecursionError`` inside the parser, which nothing maps to
a 4xx. ``JsonDepthGuard`` scans the raw body first (brackets outside JSON strings, C-speed
passes) and answers 400 ``json_too_deep`` naming ``body``; a handler for ``RecursionError``
stays behind it as a belt. ``install_body_guard(app, state)`` adds both.

The guard runs inside ``GuardMiddleware`` (key and size checks first), so the body it buffers is
already capped on the protected routes; elsewhere it buffers at most the largest body limit and
passes anything longer through unscanned (no route there parses a JSON body).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from deployments.ingress.errors import error_response
from deployments.ingress.state import IngressState

logger = logging.getLogger("ray.serve")

# No request body of this API nests deeper than ~6 levels; 64 leaves room for any future
# field while keeping every parser (json, pydantic) far from Python's recursion limit (1000).
MAX_JSON_DEPTH = 64
# Bodies that are not JSON: never scanned (an upload's bytes may hold any number of "[").
_UNSCANNED_TYPES = ("multipart/", "application/x-www-form-urlencoded")
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
# Bytes per vectorised pass: bounds the scan's working arrays (~30 MB) whatever the body size.
_SCAN_CHUNK = 1 << 20

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def json_depth_over(body: bytes, limit: int = MAX_JSON_DEPTH) -> int | None:
    """How deep ``body`` nests arrays and objects when that is over ``limit``, else None.

    The depth returned is a lower bound: the scan stops in the first megabyte that goes over.

    Brackets inside JSON strings do not count (nor after an unterminated quote: the parser stops
    there). A body that is not valid JSON is scanned the same way; the parser refuses it after.
    """
    # Fast path, one C pass each: fewer brackets than the limit cannot nest deeper than it.
    if body.count(b"[") + body.count(b"{") <= limit:
        return None
    codes = np.frombuffer(_as_utf8(body), dtype=np.uint8)
    # Vectorised over chunks (a per-byte Python loop would take seconds on a 15 MB body, and
    # a regex over strings goes quadratic on crafted escapes); state carried between chunks.
    depth = 0
    in_string = False
    backslashes = 0  # length of the backslash run that ends the previous chunk
    for start in range(0, len(codes), _SCAN_CHUNK):
        chunk = codes[start : start + _SCAN_CHUNK]
        is_backslash = chunk == _BACKSLASH
        if backslashes == 0 and not is_backslash.any():
            quotes = chunk == _QUOTE
            run_end = 0
        else:
            positions = np.arange(len(chunk), dtype=np.int32)
            # Backslash run ending at each position: distance to the last other byte.
            last_other = np.maximum.accumulate(np.where(is_backslash, -1, positions))
            run = positions - last_other
            run[last_other < 0] += backslashes
            odd_before = np.empty(len(chunk), dtype=bool)
            odd_before[0] = backslashes % 2 == 1
            odd_before[1:] = (run[:-1] & 1) == 1
            # A quote after an odd run of backslashes is escaped: it neither opens nor closes.
            quotes = (chunk == _QUOTE) & ~odd_before
            run_end = int(run[-1])
        # Parity of the quotes so far (a uint8 sum wraps at 256, which keeps the parity).
        inside = ((np.cumsum(quotes, dtype=np.uint8) + in_string) & 1) == 1
        steps = np.where(inside, 0, _STEP[chunk]).astype(np.int32)
        running = np.cumsum(steps, dtype=np.int32) + depth
        deepest = int(running.max())
        if deepest > limit:
            return deepest
        depth = int(running[-1])
        in_string = bool(inside[-1])
        backslashes = run_end
    return None


def _as_utf8(body: bytes) -> bytes:
    # json.loads accepts UTF-16 and UTF-32 bodies too; their NUL bytes would hide escapes.
    encoding = json.detect_encoding(body)
    if encoding in ("utf-8", "utf-8-sig"):
        return body
    try:
        return body.decode(encoding).encode("utf-8")
    except UnicodeDecodeError:
        return body  # not decodable: the parser refuses it; scan the bytes as they are


def _scanned(scope: Scope) -> bool:
    if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
        return False
    for name, value in scope.get("headers") or []:
        if name == b"content-type":
            return not value.decode("latin-1").lower().lstrip().startswith(_UNSCANNED_TYPES)
    return True  # no Content-Type: FastAPI and the image routes parse it as JSON


def too_deep_response(depth: int | None) -> JSONResponse:
    """400 ``json_too_deep`` naming ``body``; ``depth`` is how deep it went, when known."""
    seen = f"at least {depth} levels deep" if depth is not None else "too deep to parse"
    return error_response(
        400,
        "json_too_deep",
        f"the body nests JSON arrays and objects {seen}; the limit is {MAX_JSON_DEPTH} "
        "levels: send a flatter document",
        "body",
    )


class JsonDepthGuard:
    """ASGI middleware: 400 ``json_too_deep`` for request bodies nested over the limit."""

    def __init__(self, app: ASGIApp, state: IngressState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _scanned(scope):
            await self.app(scope, receive, send)
            return
        limits = self.state.config.limits
        cap = max(limits.max_body_bytes, limits.max_image_body_bytes)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more and size <= cap:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if not more:
            depth = json_depth_over(body)
            if depth is not None:
                logger.info("refused a JSON body nested %d levels deep", depth)
                await too_deep_response(depth)(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            # The buffered body first, then (only past the cap) the rest as it comes.
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": more}
            return await receive()

        await self.app(scope, replay, send)


async def _recursion_error(request: Request, exc: Exception) -> JSONResponse:
    # Belt: a body the scan let through still must not be a 500 when a parser recurses too far.
    route = getattr(request.scope.get("route"), "path", "an unmatched path")
    logger.warning("RecursionError on %s; answered 400 json_too_deep", route)
    return too_deep_response(None)


def install_body_guard(app: FastAPI, state: IngressState) -> None:
    """Add the depth guard (inside any middleware added later) and the RecursionError handler."""
    app.add_middleware(JsonDepthGuard, state=state)
    app.add_exception_handler(RecursionError, _recursion_error)
