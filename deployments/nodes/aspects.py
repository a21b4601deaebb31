"""Aspect-sentiment node: a thin Ray Serve adapter over ``models.aspects``.

Per text, the sentiment of each aspect (terms given or found by the model, or the MAMS
categories). The shipped LoRA MiniLM artifact loads by default, its checksums verified; a
refused artifact leaves the VADER-window fallback serving, every answer degraded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ray import serve

from configs.nodes import AspectModelSpec
from deployments.nodes.base import BatchedNodeMixin
from models.answers import Answer
from models.aspect_types import AspectAnswer, AspectRequest, WindowVaderAspects

logger = logging.getLogger("ray.serve")


@serve.deployment(
    name="AspectSentiment", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1}
)
class AspectSentimentNode(BatchedNodeMixin[AspectRequest, AspectAnswer]):
    """Per request: one label and scores per aspect term or category."""

    def __init__(self, model_spec: AspectModelSpec | Mapping[str, Any] | None = None) -> None:
        # models.aspects imports torch: only in this replica, never in the ingress.
        from models.aspects import AspectSentiment, load_shipped_aspects
        from models.shipped import ShippedArtifactError

        spec = AspectModelSpec.model_validate(model_spec or {})
        if spec.path is not None:
            self.model = AspectSentiment.load(spec.path, device=spec.device)
            return
        try:
            self.model = load_shipped_aspects(spec.device)
        except (ShippedArtifactError, OSError) as exc:
            # A refused artifact must not serve, nor keep the node down: the fallback answers.
            self.model = WindowVaderAspects.load()
            logger.error("shipped aspect model refused at start-up: %s; VADER window serves", exc)
            self.degraded_reason = (
                f"shipped aspect model refused ({type(exc).__name__}); fallback "
                f"{self.model.info.name} answers"
            )

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def predict(self, requests: list[AspectRequest]) -> list[Answer[AspectAnswer]]:
        """Aspect sentiment for each request (batched across concurrent requests)."""
        return await self._run_model(requests)
