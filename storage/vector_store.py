"""Embed once, storage side: where text vectors are kept between nodes and replicas.

Every node that runs MiniLM on post text wraps its encoder in a
`models.text_vectors.CachingEmbedder` over the store `open_text_vector_store` picks:

* ``REDIS_URL`` set: `RedisVectorStore`, shared by every node and replica, so a post the
  moderation head embedded is not encoded again by the Embedder when the post is ingested.
  Vectors are float32 bytes under ``<key_prefix><encoder id>:<text hash>``, ``SET ... PX``
  for the TTL.
* Otherwise: a `models.text_vectors.LocalVectorStore` per replica, which only saves repeats
  within one node.

Redis is an optimisation, never a dependency (the outage rule of `storage.redis`): an error
marks the store down for ``retry_s`` (no network call meanwhile), the store raises, and
`CachingEmbedder` counts the error and encodes the texts itself. The sync client is used
because encoders run in the node's worker thread, not on its event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from configs.nodes import TextVectorCacheConfig
from configs.settings import get_settings
from models.embeddings import EMBEDDING_DIM
from models.text_vectors import LocalVectorStore, TextVectorStore
from storage.redis import RedisConnection, RedisGate, RedisUnavailableError, SyncClient

__all__ = ["RedisVectorStore", "VectorStoreUnavailableError", "open_text_vector_store"]

# Little-endian float32 on the wire, whatever the replica's byte order.
_WIRE_DTYPE = np.dtype("<f4")
_LOCAL_REASON = (
    "REDIS_URL is empty: per-replica in-process LRU, so vectors are reused within this "
    "node only, not across nodes"
)


class VectorStoreUnavailableError(RedisUnavailableError):
    """Redis failed less than ``retry_s`` ago: the store is skipped without a network call."""


class RedisVectorStore:
    """Vectors in Redis as float32 bytes with a TTL; raises on errors (callers count them)."""

    backend = "redis"

    def __init__(
        self,
        redis_url: str,
        config: TextVectorCacheConfig,
        dim: int = EMBEDDING_DIM,
        client: SyncClient | None = None,
    ) -> None:
        """Connect lazily to `redis_url`; `client` replaces the connection (tests)."""
        self.config = config
        self.dim = dim
        gate = RedisGate(
            "text vector store",
            config.retry_s,
            "encoding without it",
            unavailable_error=VectorStoreUnavailableError,
        )
        self._redis = RedisConnection(redis_url, gate, config.socket_timeout_s, client)

    @property
    def last_error(self) -> str | None:
        """The latest Redis error (kept after it recovers), for /health."""
        return self._redis.gate.last_error

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        """The stored vector of each key, ``None`` when absent or not ``dim`` float32 values.

        Raises:
            VectorStoreUnavailableError: Redis failed less than ``retry_s`` ago.
            redis.RedisError, OSError: Redis failed now (the store is marked down).
        """
        if not keys:
            return []
        prefixed = [self.config.key_prefix + key for key in keys]
        raws = self._redis.run(lambda client: client.mget(prefixed))
        return [self._decode(raw) for raw in raws]

    def put_many(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Store each vector for ``ttl_s`` (one pipelined round trip).

        Raises:
            VectorStoreUnavailableError: Redis failed less than ``retry_s`` ago.
            redis.RedisError, OSError: Redis failed now (the store is marked down).
        """
        if not vectors:
            return
        ttl_ms = max(1, int(self.config.ttl_s * 1000))

        def write(client: SyncClient) -> None:
            pipe = client.pipeline(transaction=False)
            for key, vector in vectors.items():
                raw = np.ascontiguousarray(vector, dtype=_WIRE_DTYPE).tobytes()
                pipe.set(self.config.key_prefix + key, raw, px=ttl_ms)
            pipe.execute()

        self._redis.run(write)

    def info(self) -> dict[str, object]:
        """Backend, state (up / down), TTL, key prefix and the last error, for /health."""
        return {
            "backend": self.backend,
            "state": self._redis.gate.state,
            "ttl_s": self.config.ttl_s,
            "key_prefix": self.config.key_prefix,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        """Close the connection pool (tests; replicas keep theirs until they stop)."""
        self._redis.close()

    def _decode(self, raw: bytes | str | None) -> np.ndarray | None:
        # The client never decodes responses: a str could only come from a foreign client.
        if not isinstance(raw, bytes) or len(raw) != self.dim * _WIRE_DTYPE.itemsize:
            return None  # absent, or written by something else: re-encode it
        return np.frombuffer(raw, dtype=_WIRE_DTYPE).astype(np.float32)


def open_text_vector_store(
    config: TextVectorCacheConfig, redis_url: str | None = None
) -> TextVectorStore:
    """Redis when `redis_url` (default ``get_settings().redis_url``) is set, else the local LRU."""
    url = get_settings().redis_url if redis_url is None else redis_url
    if url:
        return RedisVectorStore(url, config)
    return LocalVectorStore(config.local_max_entries, reason=_LOCAL_REASON)
