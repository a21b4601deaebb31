"""Image tagger node: a thin Ray Serve adapter over ``models.tagger``.

CLIP zero-shot when ``tagger_model.path`` names a local checkpoint, plus the tags the face
detector backs; without a checkpoint, only those. Items are `ImageTagRequest` (image and
``top_k``) so one batch can mix requests that ask for different numbers of tags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import serve

from configs.nodes import TaggerModelSpec
from deployments.nodes.base import BatchedNodeMixin
from models.answers import Answer, ModelInfo
from models.images import ImageTagRequest
from models.tag_types import DEFAULT_TAGS, ImageTags
from models.tagger import ImageTagModel


class _TagRequests:
    """`ImageTagModel` behind the one-list ``predict_batch`` that BatchedNodeMixin calls."""

    def __init__(self, tagger: ImageTagModel) -> None:
        self.tagger = tagger

    @property
    def info(self) -> ModelInfo:
        return self.tagger.info

    def predict_batch(self, items: list[ImageTagRequest]) -> list[ImageTags]:
        return self.tagger.predict_requests(items)


@serve.deployment(name="ImageTagger", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5})
class ImageTagger(BatchedNodeMixin[ImageTagRequest, ImageTags]):
    """Per image: tags with scores and the models behind each, and the faces found."""

    def __init__(self, model_spec: TaggerModelSpec | Mapping[str, Any] | None = None) -> None:
        spec = TaggerModelSpec.model_validate(model_spec or {})
        self.model = _TagRequests(
            ImageTagModel.load(
                spec.path,
                tags=spec.tags or DEFAULT_TAGS,
                top_k=spec.top_k,
                device=spec.device,
                prompt_template=spec.prompt_template,
            )
        )

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def predict(self, items: list[ImageTagRequest]) -> list[Answer[ImageTags]]:
        """Tags for each request (batched across concurrent requests)."""
        return await self._run_model(items)
