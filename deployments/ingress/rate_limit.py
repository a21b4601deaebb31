"""Per-key token buckets: each API key may send ``key_rate_per_s`` requests a second on
average and ``key_burst`` at once; above that the ingress answers 429 with ``Retry-After``.

Keys are told apart by a sha256 prefix of the raw ``X-API-Key`` header value, so the table
never holds a key itself. ``RateLimitMiddleware`` sits inside the key check
(``GuardMiddleware``): only accepted keys get a bucket, and a client cycling through invented
keys cannot fill the table. Requests without a key (liveness, docs) are not limited. The
buckets are per replica: with N ingress replicas a key gets up to N times the rate.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from deployments.ingress.errors import error_response, retry_after_header
from deployments.ingress.state import IngressState

# The header the key comes in (``middleware.API_KEY_HEADER``; not imported, so the two
# middlewares stay independent).
API_KEY_HEADER = "X-API-Key"
_HEADER_BYTES = API_KEY_HEADER.lower().encode("latin-1")
# 16 hex digits (64 bits) of sha256: distinct keys never share a bucket in practice.
KEY_ID_CHARS = 16

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def key_id(raw_key: str) -> str:
    """The bucket id of a key: a sha256 prefix, never the key."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()[:KEY_ID_CHARS]


@dataclass
class TokenBucket:
    """``tokens`` left (at most the burst) as of ``updated_s``."""

    tokens: float
    updated_s: float


class KeyRateLimiter:
    """Token buckets by key id, least recently used dropped beyond ``max_keys``.

    Pure logic with the clock passed in; thread-safe (gRPC methods may run in threads).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def acquire(
        self, key: str, rate_per_s: float, burst: int, max_keys: int, now_s: float
    ) -> float:
        """Take one token for ``key``: 0.0 when granted, else the seconds until one is due."""
        with self._lock:
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = TokenBucket(float(burst), now_s)
            else:
                elapsed_s = max(0.0, now_s - bucket.updated_s)
                bucket.tokens = min(float(burst), bucket.tokens + elapsed_s * rate_per_s)
                bucket.updated_s = now_s
            self._buckets[key] = bucket
            while len(self._buckets) > max_keys:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate_per_s

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)


def rate_limited_response(wait_s: float) -> Any:
    """429 naming the header whose key ran out, with ``Retry-After`` (whole seconds)."""
    retry_s = max(1, math.ceil(wait_s))
    return error_response(
        429,
        "rate_limited",
        f"too many requests for this {API_KEY_HEADER}; retry after {retry_s} s or ask for a "
        "higher limits.key_rate_per_s",
        API_KEY_HEADER,
        headers=retry_after_header(wait_s),
    )


class RateLimitMiddleware:
    """Takes one token per HTTP request that carries a key; 429 when the key's bucket is empty.

    The rate, burst and table size are read from the replica's live config on every request,
    so ``reconfigure`` changes them without a restart.
    """

    def __init__(self, app: ASGIApp, state: IngressState) -> None:
        self.app = app
        self.state = state
        self.limiter = KeyRateLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = dict(scope.get("headers") or []).get(_HEADER_BYTES)
            if raw is not None and raw.strip():
                limits = self.state.config.limits
                wait_s = self.limiter.acquire(
                    key_id(raw.decode("latin-1").strip()),
                    limits.key_rate_per_s,
                    limits.key_burst,
                    limits.max_rate_limited_keys,
                    time.monotonic(),
                )
                if wait_s > 0:
                    await rate_limited_response(wait_s)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
