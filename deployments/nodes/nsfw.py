"""NSFW image node: a thin Ray Serve adapter over ``models.nsfw`` (nudenet's shipped detector).

It receives decoded RGB arrays (the ingress fetches and decodes; never this node), batches
concurrent requests with ``@serve.batch`` and runs one onnxruntime call per batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import serve

from configs.nodes import NsfwModelSpec
from deployments.nodes.base import BatchedNodeMixin
from models.answers import Answer
from models.images import RGBImage
from models.nsfw import (
    DEFAULT_QUESTIONABLE_LABELS,
    DEFAULT_UNSAFE_LABELS,
    NsfwResult,
    NudeNetDetector,
)


@serve.deployment(name="NsfwDetector", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5})
class NsfwDetector(BatchedNodeMixin[RGBImage, NsfwResult]):
    """Per image: safe / questionable / unsafe probabilities and the labelled boxes."""

    def __init__(self, model_spec: NsfwModelSpec | Mapping[str, Any] | None = None) -> None:
        spec = NsfwModelSpec.model_validate(model_spec or {})
        self.model = NudeNetDetector.load(
            spec.path,
            min_score=spec.min_score,
            unsafe_labels=spec.unsafe_labels or DEFAULT_UNSAFE_LABELS,
            questionable_labels=spec.questionable_labels or DEFAULT_QUESTIONABLE_LABELS,
            num_threads=spec.num_threads,
            device=spec.device,
        )

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def predict(self, images: list[RGBImage]) -> list[Answer[NsfwResult]]:
        """NSFW result for each RGB array (batched across concurrent requests)."""
        return await self._run_model(images)
