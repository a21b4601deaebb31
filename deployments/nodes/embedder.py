"""Embedding node: all-MiniLM-L6-v2 sentence vectors, batched (``models.embeddings``).

The one place post text becomes a vector: the Recommender asks it only for texts whose vector
is not stored yet (vectors are kept by text hash in the feature store). With
``args.text_vectors`` on, a text another node already embedded (a moderation head, smart
replies) is read from the shared vector store instead of encoded (``deployments/text_vectors``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import serve

from configs.nodes import TextVectorCacheConfig
from configs.recommender import EmbeddingModelSpec
from deployments.nodes.text_vectors import TextVectorNodeMixin
from models.answers import Answer
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
        # CachingEmbedder has the encoder's predict_batch and info, so batching is unchanged.
        self.model = self._cache_encoder(encoder)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def predict(self, texts: list[str]) -> list[Answer[list[float]]]:
        """One unit vector per text, with the encoder that made it."""
        return await self._run_model(texts)
