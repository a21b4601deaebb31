"""Text moderation node: a thin Ray Serve adapter over ``models.moderation``."""

from __future__ import annotations

import json
from typing import Any

from ray import serve

from configs.nodes import ModerationModelSpec
from deployments.nodes.base import load_registered_head
from deployments.nodes.text_vectors import TextVectorNodeMixin
from models.answers import Answer
from models.moderation import load_moderator


@serve.deployment(name="TextModeration", max_ongoing_requests=64)
class TextModeration(TextVectorNodeMixin[str, dict[str, float]]):
    """Scores texts per moderation category; the ingress turns scores into actions."""

    # Scores are a pure function of (text, model version) and plain JSON: cacheable.
    result_cache_allowed = True
    result_type = dict[str, float]

    def __init__(
        self, model_spec: dict[str, Any] | None = None, text_vectors: dict[str, Any] | None = None
    ) -> None:
        self._configure_text_vectors(text_vectors)
        spec = ModerationModelSpec.model_validate(model_spec or {})
        # Window length, stride, neutral band: they change answers, not the model version.
        self.result_cache_variant = json.dumps(spec.loader_kwargs(), sort_keys=True)
        self.head_task, self.model_device = "moderation", spec.device
        if spec.kind == "head" and spec.registry is not None:
            # Remembered so an alias is followed (user_config.registry_poll_s).
            self.init_registry_ref = spec.registry
            self.model = load_registered_head(
                "moderation", spec.registry, spec.device, embedder=self._head_embedder()
            )
        elif spec.kind == "head":
            # Embed once: the head reads vectors other nodes stored (args.text_vectors).
            embedder = self._head_embedder()
            self.model = load_moderator("head", spec.path, spec.device, embedder=embedder)
        else:
            self.model = load_moderator(spec.kind, spec.path, spec.device, **spec.loader_kwargs())

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def predict(self, texts: list[str]) -> list[Answer[dict[str, float]]]:
        """Category scores for each text (batched across concurrent requests)."""
        return await self._run_model(texts)
