"""Result cache of a model node: one answer per (node, model name, model version, input).

Keys are ``<key_prefix><sha256 hex>`` over the node, the model name, the model version, the
load options that change answers, and the canonical JSON of the input, so a new model version
never reads an older version's answers and no text appears in a key. Values are the JSON of
the model's result, written and read back through a pydantic ``TypeAdapter`` of the node's
result type, so typed results (frozen dataclasses) come back as the same types.

With ``REDIS_URL`` set the results live in Redis (shared by every replica, ``SET ... PX``
for the TTL), behind the outage rule of `storage.redis`: any Redis error marks the cache down
(state and last error in ``info()``), the batch is computed by the model as if nothing was
cached, and Redis is tried again once ``retry_s`` has passed. Without ``REDIS_URL`` each
replica keeps a bounded in-process LRU.

Counters (``info()``, and the ``count`` callable the node passes in: its Prometheus counter)
are per input: ``hit`` (answered from the cache), ``miss`` (computed, then stored) or
``error`` (the cache could not be read or written for it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError

from configs.nodes import ResultCacheConfig
from storage.redis import AsyncClient, AsyncRedisConnection, RedisGate, RedisUnavailableError

logger = logging.getLogger("ray.serve")

CacheOutcome = Literal["hit", "miss", "error"]
# Called once per input with (node, outcome): the node's metric (deployments.metrics).
CacheCounter = Callable[[str, CacheOutcome], None]
T = TypeVar("T")

_NOT_FOUND: Any = object()


def cache_key(
    prefix: str, node: str, model_name: str, model_version: str, item: Any, variant: str = ""
) -> str:
    """``prefix`` + sha256 of node, model name, model version, variant and the item's JSON.

    `variant` holds the load options that change answers without changing the model version
    (a transformer's window length and stride, the sentiment neutral band).
    """
    canonical = json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # \x1f (unit separator) between parts: no name or version can shift bytes between fields.
    digest = hashlib.sha256(
        "\x1f".join((node, model_name, model_version, variant, canonical)).encode("utf-8")
    ).hexdigest()
    return prefix + digest


class _LocalLRU:
    """Bounded in-process store with a TTL per entry (the backend without REDIS_URL)."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The live value of each key, or None (expired entries are dropped)."""
        now = time.monotonic()
        found: list[str | None] = []
        for key in keys:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= now:
                if entry is not None:
                    del self._entries[key]
                found.append(None)
                continue
            self._entries.move_to_end(key)
            found.append(entry[1])
        return found

    def set_many(self, values: dict[str, str], ttl_s: float) -> None:
        """Store each value for `ttl_s`; the least recently used go beyond ``max_entries``."""
        expires = time.monotonic() + ttl_s
        for key, value in values.items():
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _no_count(node: str, outcome: CacheOutcome) -> None:
    """The default counter: nothing beyond ``info()``."""


class ResultCache:
    """Looks results up and stores them for one node; never raises on a backend failure."""

    def __init__(
        self,
        node: str,
        config: ResultCacheConfig,
        redis_url: str = "",
        count: CacheCounter = _no_count,
        result_type: Any = Any,
    ) -> None:
        """`count` is called once per input with (node, outcome), e.g. a Prometheus counter;
        `result_type` is what the node's model returns (e.g. ``SentimentScores``)."""
        self.node = node
        self.config = config
        self._count_outcome = count
        self._codec: TypeAdapter[Any] = TypeAdapter(result_type)
        self._local = None if redis_url else _LocalLRU(config.local_max_entries)
        self._redis = (
            AsyncRedisConnection(
                redis_url,
                RedisGate(f"result cache of {node}", config.retry_s, "answering without the cache"),
                config.socket_timeout_s,
            )
            if redis_url
            else None
        )
        self.last_error: str | None = None
        self.hits = 0
        self.misses = 0
        self.errors = 0

    @property
    def backend(self) -> str:
        """``"redis"`` or ``"in-process"``."""
        return "in-process" if self._redis is None else "redis"

    def key(self, model_name: str, model_version: str, item: Any, variant: str = "") -> str:
        """The key of `item`'s result under this model version (and load options)."""
        return cache_key(
            self.config.key_prefix, self.node, model_name, model_version, item, variant
        )

    def info(self) -> dict[str, object]:
        """Backend, state (up / down) and counters, for /health."""
        info: dict[str, object] = {
            "backend": self.backend,
            "state": "up" if self._redis is None else self._redis.gate.state,
            "ttl_s": self.config.ttl_s,
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "last_error": self.last_error,
        }
        if self._local is not None:
            info["reason"] = "REDIS_URL is empty: per-replica in-process LRU"
            info["entries"] = len(self._local)
        return info

    # ---- lookups ------------------------------------------------------------------------
    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        """The cached result of each key, or ``NOT_FOUND``; counts hits and errors.

        Misses are counted by `put_many`, once the model has computed them (or as errors when
        the cache is unavailable), so each input counts exactly once.
        """
        if not keys:
            return []
        raws = await self._read(keys)
        if raws is None:
            return [_NOT_FOUND] * len(keys)
        found: list[Any] = []
        for raw in raws:
            value = _NOT_FOUND
            if raw is not None:
                try:
                    value = self._codec.validate_json(raw)
                except ValidationError:
                    value = _NOT_FOUND  # a foreign, truncated or older value: recompute it
            found.append(value)
        hits = sum(1 for value in found if value is not _NOT_FOUND)
        self._count("hit", hits)
        return found

    async def put_many(self, values: dict[str, Any], computed: int) -> None:
        """Store freshly computed results; `computed` inputs count as misses (or errors)."""
        encoded: dict[str, str] = {}
        for key, value in values.items():
            try:
                plain = self._codec.dump_python(value, warnings=False)
                encoded[key] = json.dumps(plain, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                # Not plain JSON (a numpy float, NaN): answered, just not cached.
                # (dataclasses become dicts first; pydantic errors are ValueErrors too.)
                self.last_error = f"result not JSON-serialisable: {type(exc).__name__}"
        unstored = len(values) - len(encoded)
        if unstored:
            self._count("error", unstored)
            computed -= unstored
        if not encoded:
            self._count("miss", computed)
            return
        if self._local is not None:
            self._local.set_many(encoded, self.config.ttl_s)
            self._count("miss", computed)
            return
        ttl_ms = max(1, int(self.config.ttl_s * 1000))

        async def write(client: AsyncClient) -> bool:
            pipe = client.pipeline(transaction=False)
            for key, value in encoded.items():
                pipe.set(key, value, px=ttl_ms)
            await pipe.execute()
            return True

        self._count("miss" if await self._redis_call(write) else "error", computed)

    @staticmethod
    def found(value: Any) -> bool:
        """Whether `get_many` found a value (results may be any JSON, ``null`` included)."""
        return value is not _NOT_FOUND

    async def aclose(self) -> None:
        """Close the Redis connections (the cache is being replaced or the replica stops)."""
        if self._redis is not None:
            await self._redis.aclose()

    # ---- backend ------------------------------------------------------------------------
    async def _read(self, keys: Sequence[str]) -> list[Any] | None:
        """Raw values, or None when the cache cannot be read (inputs counted as errors)."""
        if self._local is not None:
            return self._local.get_many(keys)

        async def read(client: AsyncClient) -> list[Any]:
            return list(await client.mget(list(keys)))

        return await self._redis_call(read)

    async def _redis_call(self, action: Callable[[AsyncClient], Awaitable[T]]) -> T | None:
        """``action``'s answer; None when Redis is skipped or fails (then marked down)."""
        assert self._redis is not None  # only called without a local store
        try:
            return await self._redis.run(action)
        except RedisUnavailableError:
            return None
        except Exception:  # noqa: BLE001 - any client failure: serve without the cache
            self.last_error = self._redis.gate.last_error
            return None

    def _count(self, outcome: CacheOutcome, count: int) -> None:
        if count <= 0:
            return
        if outcome == "hit":
            self.hits += count
        elif outcome == "miss":
            self.misses += count
        else:
            self.errors += count
        for _ in range(count):
            self._count_outcome(self.node, outcome)
