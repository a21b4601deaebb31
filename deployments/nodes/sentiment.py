"""Sentiment node: a thin Ray Serve adapter over ``models.sentiment``."""

from __future__ import annotations

import json
from typing import Any

from ray import serve

from configs.nodes import SentimentModelSpec
from deployments.nodes.base import load_registered_head
from deployments.nodes.text_vectors import TextVectorNodeMixin
from models.answers import Answer
from models.sentiment import SentimentScores, load_sentiment


@serve.deployment(name="Sentiment", max_ongoing_requests=64)
class Sentiment(TextVectorNodeMixin[str, SentimentScores]):
    """Labels texts positive / negative / neutral."""

    # Scores are a pure function of (text, model version) and plain JSON: cacheable.
    result_cache_allowed = True
    result_type = SentimentScores

    def __init__(
        self, model_spec: dict[str, Any] | None = None, text_vectors: dict[str, Any] | None = None
    ) -> None:
        self._configure_text_vectors(text_vectors)
        spec = SentimentModelSpec.model_validate(model_spec or {})
        # Window length, stride, neutral band: they change answers, not the model version.
        self.result_cache_variant = json.dumps(spec.loader_kwargs(), sort_keys=True)
        self.head_task, self.model_device = "sentiment", spec.device
        if spec.kind == "head" and spec.registry is not None:
            # Remembered so an alias is followed (user_config.registry_poll_s).
            self.init_registry_ref = spec.registry
            self.model = load_registered_head(
                "sentiment", spec.registry, spec.device, embedder=self._head_embedder()
            )
        elif spec.kind == "head":
            # Embed once: the head reads vectors other nodes stored (args.text_vectors).
            embedder = self._head_embedder()
            self.model = load_sentiment("head", spec.path, spec.device, embedder=embedder)
        else:
            self.model = load_sentiment(spec.kind, spec.path, spec.device, **spec.loader_kwargs())

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def predict(self, texts: list[str]) -> list[Answer[SentimentScores]]:
        """Sentiment of each text (batched across concurrent requests)."""
        return await self._run_model(texts)
