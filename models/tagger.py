"""Image tags: CLIP zero-shot over configured candidate tags, plus tags the face detector backs.

* `ClipZeroShot` loads ``CLIPModel`` / ``CLIPProcessor`` from a LOCAL directory (nothing is
  downloaded). The candidate tags' text embeddings are computed once, at load; a request only
  runs the vision tower, then one matrix product against the cached text embeddings.
* `ImageTagModel` combines it with `HaarFaceDetector`. Without a CLIP checkpoint it still
  answers, with only the tags a shipped detector supports (``people``, ``selfie``,
  ``group photo`` from face counts): no tag is ever made up, and every tag lists the models
  that produced it (``sources``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models.answers import ModelInfo
from models.device import checkpoint_version, require_checkpoint_dir, resolve_device
from models.faces import Faces, HaarFaceDetector
from models.images import ImageTagRequest, RGBImage
from models.tag_types import (
    CLIP_SOURCE,
    DEFAULT_PROMPT_TEMPLATE,
    DEFAULT_TAGS,
    DEFAULT_TOP_K,
    FACES_SOURCE,
    ImageTag,
    ImageTags,
)

# A single face covering at least this share of the picture is a selfie, not a portrait
# taken from across the room.
SELFIE_MIN_FACE_AREA_FRACTION = 0.05
GROUP_MIN_FACES = 3


class ClipZeroShot:
    """Zero-shot classifier over a fixed tag list, from a local CLIP checkpoint."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        tags: Sequence[str],
        device: torch.device,
        info: ModelInfo,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    ) -> None:
        """Wrap a loaded model and processor; use `load` instead of calling this."""
        if not tags:
            raise ValueError("the candidate tag list is empty; configure at least one tag")
        if len(set(tags)) != len(tags):
            raise ValueError(f"candidate tags {list(tags)} repeat a tag; list each tag once")
        self.model = model
        self.processor = processor
        self.tags = tuple(tags)
        self.device = device
        self.info = info
        self.prompt_template = prompt_template
        self.text_embeddings = self._embed_tags()
        self.logit_scale = float(model.logit_scale.exp().item())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        tags: Sequence[str] = DEFAULT_TAGS,
        device: str = "auto",
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        name: str | None = None,
    ) -> ClipZeroShot:
        """Load a CLIP checkpoint from a local ``save_pretrained`` directory.

        Raises:
            FileNotFoundError: ``path`` is not a checkpoint directory.
            ValueError: Bad device, empty or repeated tags, or a template without ``{tag}``.
        """
        from transformers import CLIPModel, CLIPProcessor

        if "{tag}" not in prompt_template:
            raise ValueError(
                f"prompt_template {prompt_template!r} has no {{tag}} placeholder; "
                'use something like "a photo of {tag}"'
            )
        directory = require_checkpoint_dir(path)
        torch_device = resolve_device(device)
        model: Any = CLIPModel.from_pretrained(directory, local_files_only=True)
        model = model.to(torch_device).eval()
        processor = CLIPProcessor.from_pretrained(directory, local_files_only=True)
        info = ModelInfo(
            name=name or Path(directory).name,
            version=checkpoint_version(directory),
            device=str(torch_device),
            labels=tuple(tags),
        )
        return cls(model, processor, tags, torch_device, info, prompt_template)

    def _embed_tags(self) -> torch.Tensor:
        """L2-normalised text embeddings of every candidate tag, (tags, dim); once, at load."""
        prompts = [self.prompt_template.format(tag=tag) for tag in self.tags]
        tokens = self.processor.tokenizer(prompts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            output = self.model.get_text_features(**tokens.to(self.device))
        features = getattr(output, "pooler_output", output)
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def preprocess(self, images: list[RGBImage]) -> torch.Tensor:
        """Resize, crop and normalise the images the way the checkpoint's processor says."""
        batch = self.processor.image_processor(images=images, return_tensors="pt")
        pixel_values: torch.Tensor = batch["pixel_values"]
        return pixel_values.to(self.device)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Tag probabilities (images, tags): softmax of scaled cosine similarities."""
        with torch.inference_mode():
            output = self.model.get_image_features(pixel_values=pixel_values)
            features = getattr(output, "pooler_output", output)
            image_embeddings = torch.nn.functional.normalize(features.float(), dim=-1)
            logits = self.logit_scale * image_embeddings @ self.text_embeddings.T
            return logits.softmax(dim=-1).cpu()

    def predict_batch(self, images: list[RGBImage]) -> list[dict[str, float]]:
        """``{tag: probability}`` over all candidate tags for each image, in input order."""
        if not images:
            return []
        probabilities = self.forward(self.preprocess(images)).numpy()
        return [
            {tag: float(p) for tag, p in zip(self.tags, row, strict=True)} for row in probabilities
        ]


def face_tags(faces: Faces, width: int, height: int, candidates: Sequence[str]) -> list[str]:
    """Tags a face count supports, kept only when they are candidates.

    ``people``: at least one face; ``selfie``: exactly one face covering at least 5% of the
    picture; ``group photo``: three or more faces.
    """
    count = faces.count
    supported: list[str] = []
    if count >= 1:
        supported.append("people")
    if count == 1:
        _, _, face_w, face_h = faces.boxes[0]
        if face_w * face_h >= SELFIE_MIN_FACE_AREA_FRACTION * width * height:
            supported.append("selfie")
    if count >= GROUP_MIN_FACES:
        supported.append("group photo")
    return [tag for tag in supported if tag in candidates]


def merge_tags(
    clip_scores: dict[str, float] | None, detector_tags: list[str], top_k: int
) -> list[ImageTag]:
    """CLIP's top-k plus every detector-backed tag, each with the models that produced it.

    A detector-backed tag outside CLIP's top-k is still listed (the detector saw faces), with
    CLIP's probability for it as ``score`` when CLIP ran, else ``null``: detectors give
    counts, not probabilities. CLIP tags come first, by score; detector-only tags follow.
    """
    # tag -> (score, sources), in listing order.
    listed: dict[str, tuple[float | None, list[str]]] = {}
    if clip_scores is not None:
        ranked = sorted(clip_scores.items(), key=lambda item: (-item[1], item[0]))[:top_k]
        listed = {tag: (score, [CLIP_SOURCE]) for tag, score in ranked}
    for tag in detector_tags:
        if tag in listed:
            listed[tag][1].append(FACES_SOURCE)
        else:
            score = clip_scores.get(tag) if clip_scores is not None else None
            listed[tag] = (score, [FACES_SOURCE])
    return [ImageTag(tag, score, tuple(sources)) for tag, (score, sources) in listed.items()]


class ImageTagModel:
    """Tags for images: CLIP zero-shot when a checkpoint is configured, face-backed tags always."""

    def __init__(
        self,
        faces: HaarFaceDetector,
        clip: ClipZeroShot | None = None,
        tags: Sequence[str] = DEFAULT_TAGS,
        top_k: int = DEFAULT_TOP_K,
    ) -> None:
        """Combine a face detector with an optional CLIP model; `load` builds both."""
        if top_k < 1:
            raise ValueError(f"top_k={top_k}; use 1 or more")
        self.faces = faces
        self.clip = clip
        self.tags = clip.tags if clip is not None else tuple(tags)
        self.top_k = top_k
        name = f"{clip.info.name}+{faces.info.name}" if clip else faces.info.name
        version = f"{clip.info.version}+{faces.info.version}" if clip else faces.info.version
        device = clip.info.device if clip else faces.info.device
        # Without CLIP the only tags this tagger can ever emit are the face-backed ones.
        labels = self.tags if clip else tuple(face_tags_possible(self.tags))
        self.info = ModelInfo(name=name, version=version, device=device, labels=labels)

    @classmethod
    def load(
        cls,
        clip_path: str | os.PathLike[str] | None = None,
        tags: Sequence[str] = DEFAULT_TAGS,
        top_k: int = DEFAULT_TOP_K,
        device: str = "auto",
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    ) -> ImageTagModel:
        """Load the face detector and, when ``clip_path`` is set, CLIP from that directory."""
        clip = ClipZeroShot.load(clip_path, tags, device, prompt_template) if clip_path else None
        return cls(HaarFaceDetector.load(), clip, tags, top_k)

    @property
    def models(self) -> list[str]:
        """Names of the models this tagger runs, for the ``models`` field of answers."""
        return [m.info.name for m in (self.clip, self.faces) if m is not None]

    def predict_batch(
        self, images: list[RGBImage], top_k: Sequence[int | None] | None = None
    ) -> list[ImageTags]:
        """One `ImageTags` per image, in input order.

        Args:
            images: RGB arrays.
            top_k: Per image, how many CLIP tags to keep (None: the tagger's default).
        """
        if not images:
            return []
        limits = list(top_k) if top_k is not None else [None] * len(images)
        if len(limits) != len(images):
            raise ValueError(f"got {len(limits)} top_k values for {len(images)} images")
        clip_scores: list[dict[str, float] | None] = (
            list(self.clip.predict_batch(images)) if self.clip else [None] * len(images)
        )
        faces = self.faces.predict_batch(images)
        models = tuple(self.models)
        results: list[ImageTags] = []
        for image, scores, found, limit in zip(images, clip_scores, faces, limits, strict=True):
            height, width = image.shape[:2]
            backed = face_tags(found, width, height, self.tags)
            tags = tuple(merge_tags(scores, backed, limit or self.top_k))
            results.append(ImageTags(tags=tags, faces=found, models=models))
        return results

    def predict_requests(self, requests: list[ImageTagRequest]) -> list[ImageTags]:
        """`predict_batch` over typed requests, each with its own ``top_k``."""
        return self.predict_batch([r.image for r in requests], [r.top_k for r in requests])


def face_tags_possible(candidates: Sequence[str]) -> list[str]:
    """The candidate tags a face count can ever support (the fallback's whole vocabulary)."""
    return [tag for tag in ("people", "selfie", "group photo") if tag in candidates]
