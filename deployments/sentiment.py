"""Sentiment node: a thin Ray Serve adapter over ``models.sentiment``."""

from __future__ import annotations

from typing import Any

from ray import serve

from configs.schemas import SentimentModelSpec
from deployments._node import BatchedNodeMixin, load_registered_head
from models.sentiment import load_sentiment


@serve.deployment(name="Sentiment", max_ongoing_requests=64)
class Sentiment(BatchedNodeMixin):
    """Labels texts positive / negative / neutral."""

    def __init__(self, model_spec: dict[str, Any] | None = None) -> None:
        spec = SentimentModelSpec.model_validate(model_spec or {})
        self.head_task, self.model_device = "sentiment", spec.device
        if spec.kind == "head" and spec.registry is not None:
            self.model = load_registered_head("sentiment", spec.registry, spec.device)
        else:
            self.model = load_sentiment(spec.kind, spec.path, spec.device, **spec.loader_kwargs())

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """Sentiment of each text (batched across concurrent requests)."""
        return await self._run_model(texts)
