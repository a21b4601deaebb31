"""Object detector node: a thin Ray Serve adapter over ``models.detector`` (YOLO, OpenCV DNN).

It receives decoded RGB arrays (the ingress fetches and decodes; never this node), batches
concurrent requests with ``@serve.batch`` and runs one network call per batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import serve

from configs.nodes import DetectorModelSpec
from deployments.nodes.base import BatchedNodeMixin
from models.answers import Answer
from models.detector import DetectedObjects, ObjectDetectorModel
from models.images import RGBImage


@serve.deployment(
    name="ObjectDetector", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5}
)
class ObjectDetector(BatchedNodeMixin[RGBImage, DetectedObjects]):
    """Per image: labelled boxes with scores, and the tags their labels back."""

    def __init__(self, model_spec: DetectorModelSpec | Mapping[str, Any] | None = None) -> None:
        spec = DetectorModelSpec.model_validate(model_spec or {})
        self.model = ObjectDetectorModel.load(
            spec.path,
            input_size=spec.input_size_px,
            scales=spec.scales,
            min_score=spec.min_score,
            nms_iou=spec.nms_iou,
            max_objects=spec.max_objects,
            tag_map=spec.tag_map,
            num_threads=spec.num_threads,
        )

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def predict(self, images: list[RGBImage]) -> list[Answer[DetectedObjects]]:
        """Objects for each RGB array (batched across concurrent requests)."""
        return await self._run_model(images)
