"""Text classifier node: moderation and sentiment, one class configured by task.

`deployments.app` deploys it under each task's name (``TextModeration``, ``Sentiment``, and
``TextModeration-<variant>`` / ``Sentiment-<variant>`` for experiment variants); the model
comes from `models.text_classifier.load_text_classifier`, so this class only adapts it to
Ray Serve: batching, result cache, registered heads and their aliases, shared text vectors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ray import serve
from ray.serve.deployment import Deployment
from ray.serve.handle import DeploymentHandle

from configs.nodes import TEXT_CLASSIFIER_SPECS, TextClassifierSpec, TextVectorCacheConfig
from deployments.nodes.base import load_registered_head
from deployments.nodes.text_vectors import TextVectorNodeMixin
from models.answers import Answer
from models.text_classifier import (
    SHIPPED_KIND,
    TextClassification,
    TextTask,
    load_text_classifier,
    load_with_fallback,
    task_spec,
)

# The deployment name of each task's node: metric label and part of every cache key.
NODE_NAMES: dict[str, str] = {"moderation": "TextModeration", "sentiment": "Sentiment"}


@serve.deployment(name="TextClassifier", max_ongoing_requests=64)
class TextClassifier(TextVectorNodeMixin[str, TextClassification]):
    """Scores texts for one task: moderation categories or sentiment."""

    # Scores are a pure function of (text, model version) and plain JSON: cacheable.
    result_cache_allowed = True

    def __init__(
        self,
        task: TextTask,
        model_spec: TextClassifierSpec | Mapping[str, Any] | None = None,
        text_vectors: TextVectorCacheConfig | Mapping[str, Any] | None = None,
        encoder: DeploymentHandle[Any] | None = None,
    ) -> None:
        """Load the model the task's spec names (`configs.nodes.TEXT_CLASSIFIER_SPECS`);
        heads embed through `encoder` (the Embedder's handle) when the graph shares it."""
        self.task = task
        self.result_type = task_spec(task).result_type
        self._configure_text_vectors(text_vectors, encoder)
        spec = TEXT_CLASSIFIER_SPECS[task].model_validate(model_spec or {})
        # Window length, stride, neutral band: they change answers, not the model version.
        self.result_cache_variant = json.dumps(spec.loader_kwargs(), sort_keys=True)
        self.head_task, self.model_device = task, spec.device
        if spec.kind == "head" and spec.registry is not None:
            # Remembered so an alias is followed (user_config.registry_poll_s).
            self.init_registry_ref = spec.registry
            self.model = load_registered_head(
                task, spec.registry, spec.device, embedder=self._head_embedder()
            )
        elif spec.kind == "head":
            # Embed once: the head reads vectors other nodes stored (args.text_vectors).
            self.model = load_text_classifier(
                task, "head", spec.path, spec.device, embedder=self._head_embedder()
            )
        elif spec.kind == SHIPPED_KIND:
            # Checksums checked first; refused: the embedded model serves, marked degraded.
            self.model, self.degraded_reason = load_with_fallback(
                task, SHIPPED_KIND, device=spec.device, embedder=self._head_embedder()
            )
        else:
            self.model = load_text_classifier(
                task, spec.kind, spec.path, spec.device, **spec.loader_kwargs()
            )

    @property
    def node_name(self) -> str:
        """The task's deployment name (``TextModeration``, ``Sentiment``), also for variants."""
        return NODE_NAMES[self.task]

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def predict(self, texts: list[str]) -> list[Answer[TextClassification]]:
        """The task's result for each text (batched across concurrent requests)."""
        return await self._run_model(texts)


def text_classifier_deployment(task: TextTask, variant: str | None = None) -> Deployment:
    """The `TextClassifier` deployment named for `task` (and experiment `variant`), e.g.
    ``TextModeration`` or ``Sentiment-candidate``; bind it with
    ``(task, spec, text_vectors[, encoder])``.
    """
    name = NODE_NAMES[task] if variant is None else f"{NODE_NAMES[task]}-{variant}"
    deployment: Deployment = TextClassifier.options(name=name)  # type: ignore[attr-defined]
    return deployment
