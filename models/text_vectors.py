"""Embed once: a post's MiniLM vector is computed once and reused by every text feature.

Moderation and sentiment heads, smart replies and the recommender's ingest each need the
same all-MiniLM-L6-v2 vector of the same post text. `CachingEmbedder` wraps any encoder
(`TextEncoder`: ``embed`` + ``info``) and keeps its vectors in a `TextVectorStore` shared by
those features, so the second feature to see a text reads the vector instead of running the
encoder again.

Keys are ``<encoder id>:<text_hash(text)>``. The encoder id is a digest of the encoder's name,
version and the options that change its vectors (``max_length``: a long post truncated at 128
tokens has another vector than at 256), so a new model, or the same model truncating
differently, never reads an older one's vectors. No text appears in a key.

The store is an optimisation, never a dependency: a store that raises (Redis down) is
counted and the texts are encoded as if nothing was stored. This module holds the protocol,
the in-process LRU store and the wrapper; the Redis store lives in
``deployments/nodes/text_vectors.py`` (only deployments talk to servers).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from models.answers import ModelInfo
from models.embeddings import EMBEDDING_DIM, text_hash

__all__ = [
    "CachingEmbedder",
    "LocalVectorStore",
    "TextEncoder",
    "TextVectorStore",
    "encoder_id",
]

# Hex characters of the encoder id in every key: 64 bits, so two encoders never share keys.
_ENCODER_ID_HEX_CHARS = 16
# Longest store error message kept for /health (redis messages name the host, never a key).
_ERROR_CHARS = 300


class TextEncoder(Protocol):
    """What `CachingEmbedder` wraps: `MiniLMEmbedder`, `OnnxEmbedder` or a test fake."""

    @property
    def info(self) -> ModelInfo:
        """Name and version of the encoder: part of every key."""
        ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """One float32 row per text, ``(len(texts), dim)``."""
        ...


class TextVectorStore(Protocol):
    """Vectors by key; a missing or unreadable key is ``None``. May raise on a backend error."""

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        """The vector stored under each key, or ``None``, in key order."""
        ...

    def put_many(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Store each vector under its key."""
        ...

    def info(self) -> dict[str, object]:
        """Backend kind and state, for /health."""
        ...


class LocalVectorStore:
    """Bounded in-process LRU of vectors (one per process; thread-safe).

    Without a TTL: a key names the encoder version and the text, so its vector never goes
    stale; only the bound evicts (least recently used first).
    """

    def __init__(self, max_entries: int, reason: str = "") -> None:
        """Keep at most `max_entries` vectors; `reason` says in /health why this backend."""
        if max_entries < 1:
            raise ValueError(f"max_entries={max_entries}; keep at least 1 vector")
        self.max_entries = max_entries
        self.reason = reason
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        # Batches run in worker threads; an OrderedDict reordered by two at once corrupts.
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        """The stored vectors (``None`` where absent); each hit becomes most recently used."""
        found: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                vector = self._entries.get(key)
                if vector is not None:
                    self._entries.move_to_end(key)
                found.append(vector)
        return found

    def put_many(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Store the vectors, then evict the least recently used beyond the bound."""
        with self._lock:
            for key, vector in vectors.items():
                self._entries[key] = vector
                self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def info(self) -> dict[str, object]:
        """``{"backend": "in-process", "entries", "max_entries"[, "reason"]}``."""
        info: dict[str, object] = {
            "backend": "in-process",
            "entries": len(self),
            "max_entries": self.max_entries,
        }
        if self.reason:
            info["reason"] = self.reason
        return info


def encoder_id(info: ModelInfo, variant: str = "") -> str:
    """Digest of the encoder's name, version and `variant`: the first part of every key."""
    # \x1f (unit separator) between parts: no name or version can shift bytes between fields.
    joined = "\x1f".join((info.name, info.version, variant))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:_ENCODER_ID_HEX_CHARS]


def _default_variant(encoder: TextEncoder) -> str:
    """The options that change an encoder's vectors but not its version (``max_length``)."""
    max_length = getattr(encoder, "max_length", None)
    return "" if max_length is None else f"max_length={max_length}"


class CachingEmbedder:
    """An encoder whose vectors are looked up in a shared store before it runs.

    Same interface as the wrapped encoder (``embed``, ``predict_batch``, ``info``), so the
    heads, the replier and the Embedder node take it unchanged. Each call encodes only the
    texts the store lacks, each distinct text once, stores them, and returns rows in input
    order.

    Counters (`stats`), per row asked: ``texts`` = ``hits`` (distinct texts found in the
    store) + ``encoded`` (distinct texts the encoder ran on) + ``duplicates`` (rows repeating
    a text earlier in the same call). ``store_errors`` counts failed store calls.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        store: TextVectorStore,
        variant: str | None = None,
        dim: int | None = None,
    ) -> None:
        """Wrap `encoder` with `store`.

        Args:
            encoder: The model that turns texts into vectors.
            store: Where vectors are shared (in-process LRU, Redis).
            variant: Load options that change vectors without changing the version; default
                the encoder's ``max_length``.
            dim: Vector size; default the encoder's ``dim`` attribute, else 384. A stored
                value of another size is treated as absent.
        """
        self.encoder = encoder
        self.store = store
        self.variant = _default_variant(encoder) if variant is None else variant
        self.dim = int(dim if dim is not None else getattr(encoder, "dim", EMBEDDING_DIM))
        self.encoder_id = encoder_id(encoder.info, self.variant)
        self._lock = threading.Lock()
        self.texts = 0
        self.hits = 0
        self.encoded = 0
        self.duplicates = 0
        self.store_errors = 0
        self.last_error: str | None = None

    @property
    def info(self) -> ModelInfo:
        """The wrapped encoder's identity: cached vectors are that encoder's vectors."""
        return self.encoder.info

    def key(self, text: str) -> str:
        """Store key of `text`'s vector under this encoder (version and variant included)."""
        return f"{self.encoder_id}:{text_hash(text)}"

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for ``texts`` as one float32 array ``(len(texts), dim)``, input order.

        Raises:
            TypeError: A text is not a str (the message names its index).
        """
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is {type(text).__name__}; send a str")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [self.key(text) for text in texts]
        # Key -> text, first occurrence first: a text repeated in one call is looked up and
        # encoded once.
        distinct = dict(zip(keys, texts, strict=True))
        vectors = self._lookup(list(distinct))
        hits = len(vectors)
        missing = [key for key in distinct if key not in vectors]
        if missing:
            fresh = self._encode([distinct[key] for key in missing])
            new = dict(zip(missing, fresh, strict=True))
            self._store(new)
            vectors.update(new)
        with self._lock:
            self.texts += len(texts)
            self.hits += hits
            self.encoded += len(missing)
            self.duplicates += len(texts) - len(distinct)
        return np.stack([vectors[key] for key in keys])

    def predict_batch(self, texts: list[str]) -> list[list[float]]:
        """One unit vector (a list of floats) per text, in input order."""
        return [row.tolist() for row in self.embed(texts)]

    def stats(self) -> dict[str, object]:
        """Counters, encoder identity and the store's backend and state, for /health."""
        with self._lock:
            counters: dict[str, object] = {
                "texts": self.texts,
                "hits": self.hits,
                "encoded": self.encoded,
                "duplicates": self.duplicates,
                "store_errors": self.store_errors,
                "last_error": self.last_error,
            }
        try:
            store = self.store.info()
        except Exception as exc:  # noqa: BLE001 - /health must answer whatever the store does
            store = {"state": "unknown", "error": f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]}
        return {
            "encoder": {
                "name": self.info.name,
                "version": self.info.version,
                "variant": self.variant,
                "id": self.encoder_id,
            },
            **counters,
            "store": store,
        }

    # ---- internals --------------------------------------------------------------------------
    def _lookup(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Usable stored vectors by key; a failing store finds nothing (counted)."""
        try:
            found = self.store.get_many(keys)
        except Exception as exc:  # noqa: BLE001 - any store failure: encode instead
            self._count_error(exc)
            return {}
        if len(found) != len(keys):
            self._count_error(
                RuntimeError(f"store returned {len(found)} values for {len(keys)} keys")
            )
            return {}
        usable: dict[str, np.ndarray] = {}
        for key, vector in zip(keys, found, strict=True):
            # A foreign or truncated value is re-encoded rather than served.
            if vector is not None and vector.shape == (self.dim,):
                usable[key] = vector
        return usable

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        """The encoder's rows for `texts`, float32, one per text (copied out of the batch)."""
        matrix = np.asarray(self.encoder.embed(texts), dtype=np.float32)
        if matrix.shape != (len(texts), self.dim):
            raise RuntimeError(
                f"encoder {self.info.name!r} returned shape {matrix.shape} for {len(texts)} "
                f"texts; expected ({len(texts)}, {self.dim})"
            )
        # Copies: a stored row must not keep the whole batch matrix alive.
        return [row.copy() for row in matrix]

    def _store(self, vectors: dict[str, np.ndarray]) -> None:
        try:
            self.store.put_many(vectors)
        except Exception as exc:  # noqa: BLE001 - any store failure: the answer stands
            self._count_error(exc)

    def _count_error(self, exc: BaseException) -> None:
        with self._lock:
            self.store_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
