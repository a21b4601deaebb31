"""Embedding node: all-MiniLM-L6-v2 sentence vectors, batched (``models.embeddings``).

The one place post text becomes a vector: the Recommender asks it only for texts whose vector
is not stored yet, and with ``args.text_vectors.encoder: shared`` (the default) the head
moderation / sentiment and smart-reply nodes ask it too (``embed_many``). Vectors are kept by
text hash in the feature store. With ``args.text_vectors`` on, a text another node already
embedded (a moderation head, smart replies) is read from the shared vector store instead of
encoded (``deployments/text_vectors``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray import serve

from configs.nodes import TextVectorCacheConfig
from configs.recommender import EmbeddingModelSpec
from deployments.nodes.text_vectors import TextVectorNodeMixin
from models.answers import Answer, ModelInfo
from models.embeddings import load_embedder


@serve.deployment(name="Embedder", max_ongoing_requests=64)
class Embedder(TextVectorNodeMixin[str, list[float]]):
    """Unit 384-dimensional vectors for texts (batched across concurrent requests)."""

    def __init__(
        self,
        model_spec: EmbeddingModelSpec | Mapping[str, Any] | None = None,
        text_vectors: TextVectorCacheConfig | Mapping[str, Any] | None = None,
    ) -> None:
        spec = EmbeddingModelSpec.model_validate(model_spec or {})
        self._configure_text_vectors(text_vectors)
        encoder = load_embedder(
            spec.backend,
            spec.path,
            spec.device,
            spec.max_length,
            onnx_path=spec.onnx_path,
            onnx_threads=spec.onnx_threads,
        )
        # The first forward pass is several times slower than the next (allocations, lazy
        # kernels); the heads wait on this node within their own timeouts, so pay it here,
        # not in the first request's (which otherwise answers degraded on a cold start).
        encoder.embed(["warm-up"])
        # CachingEmbedder has the encoder's predict_batch and info, so batching is unchanged.
        self.encoder = self._cache_encoder(encoder)
        self.model = self.encoder

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def predict(self, texts: list[str]) -> list[Answer[list[float]]]:
        """One unit vector per text, with the encoder that made it."""
        return await self._run_model(texts)

    async def embed_many(self, texts: list[str]) -> np.ndarray:
        """Vectors of a whole batch in one call (``(len(texts), 384)`` float32): what the
        other text nodes ask for when the graph shares this encoder
        (``deployments.nodes.remote_encoder``). Their own batching already grouped the texts."""
        return await asyncio.to_thread(self.encoder.embed, list(texts))

    def encoder_info(self) -> ModelInfo:
        """The encoder's identity, for the callers' model info and vector keys."""
        return self.encoder.info
