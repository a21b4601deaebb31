"""Embed once, node side: what text-embedding nodes share.

Every node that runs MiniLM on post text (Embedder, head TextModeration / Sentiment,
retrieval SmartReply) wraps its encoder in a `models.text_vectors.CachingEmbedder` over the
store `storage.vector_store.open_text_vector_store` picks (Redis when ``REDIS_URL`` is set,
shared by every node and replica; else a per-replica LRU).

With ``text_vectors.encoder: shared`` (the default) those nodes hold no MiniLM: they embed
through the Embedder's handle (`deployments.nodes.remote_encoder`), which keeps the store.

`TextVectorNodeMixin` reports the counters under ``text_vectors`` in the node's ``info()``
(which feeds /health).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TypeVar

from ray.serve.handle import DeploymentHandle

from configs.nodes import TextVectorCacheConfig
from deployments.nodes.base import BatchedNodeMixin, ItemT, ResultT
from deployments.nodes.remote_encoder import RemoteTextEncoder
from models.answers import JsonObject, ModelNodeInfo, json_object
from models.heads import shared_embedder
from models.text_vectors import CachingEmbedder, TextEncoder
from storage.vector_store import open_text_vector_store

logger = logging.getLogger("ray.serve")

EncoderT = TypeVar("EncoderT", bound=TextEncoder)


class TextVectorNodeMixin(BatchedNodeMixin[ItemT, ResultT]):
    """A model node that embeds text: builds its `CachingEmbedder`, reports it in ``info()``.

    ``text_vectors`` args are the application's ``args.text_vectors``; a node bound without
    them (``None``, e.g. the embedding benchmark's app) embeds without a store, as before.
    Call `_configure_text_vectors` first in ``__init__``.
    """

    text_vectors: CachingEmbedder | None = None
    text_vectors_config: TextVectorCacheConfig | None = None
    text_vectors_off_reason: str = "the node was bound without text_vectors args"
    # The graph's one encoder (the Embedder's handle), when the graph shares it.
    remote_encoder: RemoteTextEncoder | None = None

    def _configure_text_vectors(
        self,
        args: TextVectorCacheConfig | Mapping[str, Any] | None,
        encoder: DeploymentHandle[Any] | None = None,
    ) -> None:
        """Validate ``args.text_vectors``; the store opens with the first encoder wrapped.

        `encoder`: the Embedder's handle (``text_vectors.encoder: shared``); this node's models
        then embed through it and the Embedder keeps the store.
        """
        if encoder is not None:
            self.remote_encoder = RemoteTextEncoder(encoder)
            self._warm_remote_encoder()
        if args is None:
            return
        config = TextVectorCacheConfig.model_validate(args)
        if config.enabled:
            self.text_vectors_config = config
            self.text_vectors_off_reason = "the served model does not embed text with MiniLM"
        else:
            self.text_vectors_off_reason = "args.text_vectors.enabled is false"

    def _warm_remote_encoder(self) -> None:
        """One call to the Embedder before the first request: the handle's first call sets up
        its routing, which a request's timeout should not pay. A failure is only logged (the
        Embedder may still be starting); requests then pay it as before."""
        assert self.remote_encoder is not None
        try:
            self.remote_encoder.embed(["warm-up"])
        except Exception as exc:  # noqa: BLE001 - any failure here only costs the first request
            logger.warning("shared encoder warm-up failed (%s); the first request pays it", exc)

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
        if self.remote_encoder is not None:
            return self.remote_encoder
        if self.text_vectors_config is None:
            return None
        return self._cache_encoder(shared_embedder(self.model_device))

    def info(self) -> ModelNodeInfo:
        """The node's info plus ``text_vectors``: store backend, state and counters."""
        cache = self.text_vectors
        vectors: JsonObject
        if self.remote_encoder is not None:
            vectors = {"state": "shared encoder", "node": "Embedder"}
        elif cache is not None:
            vectors = json_object({"state": "on", **cache.stats()})
        else:
            vectors = {"state": "off", "reason": self.text_vectors_off_reason}
        return replace(super().info(), text_vectors=vectors)
