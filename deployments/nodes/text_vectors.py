"""Embed once, serving side: the Redis vector store and what text-embedding nodes share.

Every node that runs MiniLM on post text (Embedder, head TextModeration / Sentiment,
retrieval SmartReply) wraps its encoder in a `models.text_vectors.CachingEmbedder` over the
store `open_text_vector_store` picks:

* ``REDIS_URL`` set: `RedisVectorStore`, shared by every node and replica, so a post the
  moderation head embedded is not encoded again by the Embedder when the post is ingested.
  Vectors are float32 bytes under ``<key_prefix><encoder id>:<text hash>``, ``SET ... PX``
  for the TTL.
* Otherwise: a `LocalVectorStore` per replica, which only saves repeats within one node.

Redis is an optimisation, never a dependency (as in ``storage/result_cache.py``): an
error marks the store down for ``retry_s`` (no network call meanwhile), the store raises,
and `CachingEmbedder` counts the error and encodes the texts itself. The sync client is
used because encoders run in the node's worker thread, not on its event loop.

`TextVectorNodeMixin` reports the counters under ``text_vectors`` in the node's ``info()``
(which feeds /health).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from configs.nodes import TextVectorCacheConfig
from configs.settings import get_settings
from deployments.nodes.base import BatchedNodeMixin, ItemT, ResultT
from models.answers import JsonObject, ModelNodeInfo, json_object
from models.embeddings import EMBEDDING_DIM
from models.heads import shared_embedder
from models.text_vectors import CachingEmbedder, LocalVectorStore, TextEncoder, TextVectorStore

logger = logging.getLogger("ray.serve")

EncoderT = TypeVar("EncoderT", bound=TextEncoder)

# Little-endian float32 on the wire, whatever the replica's byte order.
_WIRE_DTYPE = np.dtype("<f4")
_ERROR_CHARS = 300
_LOCAL_REASON = (
    "REDIS_URL is empty: per-replica in-process LRU, so vectors are reused within this "
    "node only, not across nodes"
)


class VectorStoreUnavailableError(ConnectionError):
    """Redis failed less than ``retry_s`` ago: the store is skipped without a network call."""


class RedisVectorStore:
    """Vectors in Redis as float32 bytes with a TTL; raises on errors (callers count them)."""

    backend = "redis"

    def __init__(
        self,
        redis_url: str,
        config: TextVectorCacheConfig,
        dim: int = EMBEDDING_DIM,
        client: Any = None,
    ) -> None:
        """Connect lazily to `redis_url`; `client` replaces the connection (tests)."""
        self.config = config
        self.dim = dim
        self._redis_url = redis_url
        self._client = client
        self._lock = threading.Lock()
        self._state = "up"
        self._down_until = 0.0
        self.last_error: str | None = None

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        """The stored vector of each key, ``None`` when absent or not ``dim`` float32 values.

        Raises:
            VectorStoreUnavailableError: Redis failed less than ``retry_s`` ago.
            redis.RedisError, OSError: Redis failed now (the store is marked down).
        """
        if not keys:
            return []
        self._check_available()
        try:
            raws = self._redis().mget([self.config.key_prefix + key for key in keys])
        except Exception as exc:
            self._mark_down(exc)
            raise
        self._mark_up()
        return [self._decode(raw) for raw in raws]

    def put_many(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Store each vector for ``ttl_s`` (one pipelined round trip).

        Raises:
            VectorStoreUnavailableError: Redis failed less than ``retry_s`` ago.
            redis.RedisError, OSError: Redis failed now (the store is marked down).
        """
        if not vectors:
            return
        self._check_available()
        ttl_ms = max(1, int(self.config.ttl_s * 1000))
        try:
            pipe = self._redis().pipeline(transaction=False)
            for key, vector in vectors.items():
                raw = np.ascontiguousarray(vector, dtype=_WIRE_DTYPE).tobytes()
                pipe.set(self.config.key_prefix + key, raw, px=ttl_ms)
            pipe.execute()
        except Exception as exc:
            self._mark_down(exc)
            raise
        self._mark_up()

    def info(self) -> dict[str, object]:
        """Backend, state (up / down), TTL, key prefix and the last error, for /health."""
        return {
            "backend": self.backend,
            "state": self._state,
            "ttl_s": self.config.ttl_s,
            "key_prefix": self.config.key_prefix,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Close the connection pool (tests; replicas keep theirs until they stop)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # ---- internals --------------------------------------------------------------------------
    def _decode(self, raw: bytes | None) -> np.ndarray | None:
        if raw is None or len(raw) != self.dim * _WIRE_DTYPE.itemsize:
            return None  # absent, or written by something else: re-encode it
        return np.frombuffer(raw, dtype=_WIRE_DTYPE).astype(np.float32)

    def _check_available(self) -> None:
        with self._lock:
            if self._state == "down" and time.monotonic() < self._down_until:
                raise VectorStoreUnavailableError(
                    f"redis skipped for {self.config.retry_s:.1f} s after: {self.last_error}"
                )

    def _mark_down(self, exc: BaseException) -> None:
        with self._lock:
            # The exception type and message only: redis errors name the host, never a key.
            self.last_error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
            if self._state == "up":
                logger.warning(
                    "text vector store: redis failed (%s); encoding without it, retry in %.1f s",
                    self.last_error,
                    self.config.retry_s,
                )
            self._state = "down"
            self._down_until = time.monotonic() + self.config.retry_s

    def _mark_up(self) -> None:
        with self._lock:
            if self._state == "down":
                logger.info("text vector store: redis answers again")
            self._state = "up"

    def _redis(self) -> Any:
        with self._lock:
            if self._client is None:
                # Imported here: nodes without REDIS_URL never need the client.
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                timeout = self.config.socket_timeout_s
                self._client = redis.Redis.from_url(
                    self._redis_url,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    # No client-side retries: one failure marks the store down, and a dead
                    # Redis costs a batch one timeout, not retries with backoff.
                    retry=Retry(NoBackoff(), 0),
                )
            return self._client


def open_text_vector_store(
    config: TextVectorCacheConfig, redis_url: str | None = None
) -> TextVectorStore:
    """Redis when `redis_url` (default ``get_settings().redis_url``) is set, else the local LRU."""
    url = get_settings().redis_url if redis_url is None else redis_url
    if url:
        return RedisVectorStore(url, config)
    return LocalVectorStore(config.local_max_entries, reason=_LOCAL_REASON)


class TextVectorNodeMixin(BatchedNodeMixin[ItemT, ResultT]):
    """A model node that embeds text: builds its `CachingEmbedder`, reports it in ``info()``.

    ``text_vectors`` args are the application's ``args.text_vectors``; a node bound without
    them (``None``, e.g. the embedding benchmark's app) embeds without a store, as before.
    Call `_configure_text_vectors` first in ``__init__``.
    """

    text_vectors: CachingEmbedder | None = None
    text_vectors_config: TextVectorCacheConfig | None = None
    text_vectors_off_reason: str = "the node was bound without text_vectors args"

    def _configure_text_vectors(
        self, args: TextVectorCacheConfig | Mapping[str, Any] | None
    ) -> None:
        """Validate ``args.text_vectors``; the store opens with the first encoder wrapped."""
        if args is None:
            return
        config = TextVectorCacheConfig.model_validate(args)
        if config.enabled:
            self.text_vectors_config = config
            self.text_vectors_off_reason = "the served model does not embed text with MiniLM"
        else:
            self.text_vectors_off_reason = "args.text_vectors.enabled is false"

    def _cache_encoder(self, encoder: EncoderT) -> EncoderT | CachingEmbedder:
        """`encoder` wrapped in this node's `CachingEmbedder` when the store is on."""
        config = self.text_vectors_config
        if config is None:
            return encoder
        if self.text_vectors is None:
            store = open_text_vector_store(config)
            self.text_vectors = CachingEmbedder(encoder, store)
            logger.info(
                "text vectors: %s store for %s %s",
                store.info().get("backend"),
                encoder.info.name,
                encoder.info.version,
            )
        elif self.text_vectors.encoder is not encoder:
            # One store per node; another encoder's vectors are not the ones its keys name.
            return encoder
        return self.text_vectors

    def _head_embedder(self) -> TextEncoder | None:
        """The shared MiniLM behind this node's `CachingEmbedder` when the store is on.

        Every head this node loads (from a path, from the registry, or swapped in later by
        alias following) gets it at load time, so its vectors go through the store.
        """
        if self.text_vectors_config is None:
            return None
        return self._cache_encoder(shared_embedder(self.model_device))

    def info(self) -> ModelNodeInfo:
        """The node's info plus ``text_vectors``: store backend, state and counters."""
        cache = self.text_vectors
        vectors: JsonObject = (
            json_object({"state": "on", **cache.stats()})
            if cache is not None
            else {"state": "off", "reason": self.text_vectors_off_reason}
        )
        return replace(super().info(), text_vectors=vectors)
