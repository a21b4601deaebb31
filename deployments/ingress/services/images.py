"""Images: NSFW verdicts, tags and objects of one image, and the images of a post.

The ingress fetches (``image_fetch``: SSRF and size guards) and decodes (``models.images``:
pixel cap, truncated or non-image bytes) before any node is called, and sends the node a
decoded array no larger than ``images.max_side_px``; boxes in answers are scaled back to the
original image's pixels.

Each node call has a timeout; when the NSFW or tagger node fails, the same shipped detector
(nudenet, or the face detector) answers from the ingress with ``degraded: true``, and if even
that fails an image is flagged for review, never approved. When the object detector fails,
``/image/objects`` answers no objects with ``degraded: true`` (a 35 MB network is not loaded
into the ingress), and ``/image/tags`` answers without object-backed tags, also degraded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from configs.ingress import ImagePolicyConfig
from deployments.ingress.calls import answer_degraded, call_node, fallback_slot
from deployments.ingress.image_fetch import decode_base64_image
from deployments.ingress.schemas.common import ErrorDetail, ModelRef
from deployments.ingress.schemas.images import (
    DetectedObject,
    FacesResult,
    ImageMeta,
    ImageModerationResult,
    ImageTag,
    ImageTagsResult,
    NsfwDetection,
    NsfwScores,
    ObjectsResult,
    PostImageResult,
)
from deployments.ingress.state import IngressState, NodeHandle
from models import answers
from models.answers import Answer
from models.exceptions import (
    FeatureNotEnabledError,
    ImageInputError,
    InvalidInputError,
    OverloadedError,
)
from models.images import DecodedImage, ImageTagRequest, decode_image
from models.tag_types import OBJECTS_SOURCE, add_backed_tags

if TYPE_CHECKING:
    from models.detector import DetectedObjects
    from models.nsfw import NsfwResult
    from models.tag_types import ImageTags

logger = logging.getLogger("ray.serve")

_RATING = {"approve": "safe", "flag_for_review": "questionable", "reject": "unsafe"}
# The setting that adds each optional image node to the graph.
_NODE_SETTINGS = {
    "nsfw": "nsfw_model.enabled",
    "tagger": "tagger_model.enabled",
    "detector": "detector_model.enabled",
}
_FEATURES = {"nsfw": "image moderation", "tagger": "image tagging", "detector": "object detection"}


def image_node(state: IngressState, name: str, field_name: str) -> NodeHandle:
    """The image node's handle, or 422 feature_not_enabled naming the setting that enables it."""
    handle = state.nodes.get(name)
    if handle is None:
        raise FeatureNotEnabledError(
            field_name,
            f"{_FEATURES[name]} is not enabled in this deployment; set "
            f"args.{_NODE_SETTINGS[name]}: true in serve_config.yaml"
            + (" or send the post without images" if name == "nsfw" else ""),
        )
    return handle


@dataclass(frozen=True)
class ImageSource:
    """The one image of a request: uploaded bytes, base64 text or a URL to fetch."""

    # The request field it came in: "file", "image_base64" or "image_url".
    field: str
    data: bytes | None = None
    base64: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class LoadedImage:
    """An image's decoded pixels and its size in bytes as received."""

    decoded: DecodedImage
    size_bytes: int

    def meta(self) -> ImageMeta:
        """The image as received (before it was shrunk for the models)."""
        return ImageMeta(
            width=self.decoded.original_width,
            height=self.decoded.original_height,
            format=self.decoded.format,
            bytes=self.size_bytes,
        )

    def scale_box(self, box: Sequence[int]) -> list[int]:
        """A box of the shrunk image in the original image's pixels."""
        return [round(v * self.decoded.scale) for v in box]


async def load_image(state: IngressState, source: ImageSource) -> LoadedImage:
    """The source's bytes (decoded from base64 or fetched) decoded into pixels."""
    limits = state.config.images
    if source.data is not None:
        data = source.data
    elif source.base64 is not None:
        data = decode_base64_image(source.base64, limits.max_image_bytes)
    else:
        data = await state.image_fetcher.fetch(source.url or "", limits, source.field)
    # In a worker thread: CPU work must not block the ingress's event loop.
    decoded = await asyncio.to_thread(
        decode_image, data, source.field, limits.max_pixels, limits.max_side_px
    )
    return LoadedImage(decoded, len(data))


# ---- NSFW ---------------------------------------------------------------------------------
def image_action(scores: dict[str, float] | None, policy: ImagePolicyConfig) -> str:
    """reject / flag_for_review / approve from NSFW probabilities; no scores is never approve."""
    if scores is None:
        return "flag_for_review"
    if scores["unsafe"] >= policy.reject_threshold:
        return "reject"
    if max(scores["unsafe"], scores["questionable"]) >= policy.flag_threshold:
        return "flag_for_review"
    return "approve"


async def judge_image(
    state: IngressState, nsfw: NodeHandle, image: LoadedImage
) -> ImageModerationResult:
    """NSFW verdict for one decoded image: node first, then the in-ingress fallback."""
    reason: str | None = None
    output: Answer[NsfwResult] | None = None
    try:
        output = await call_node(
            state, nsfw.predict, state.config.timeouts.nsfw_s, image.decoded.pixels
        )
    except Exception as exc:  # any node failure: answer from the fallback, say so
        reason = answer_degraded("nsfw", exc)
    if output is None:
        try:
            fallback = await state.fallbacks.nsfw.get()  # loaded once, outside the bound
            async with fallback_slot(state, "nsfw"):  # bounded: 503 when full
                results = await asyncio.to_thread(fallback.predict_batch, [image.decoded.pixels])
            output = Answer(results[0], answers.ModelRef.of(fallback.info))
        except OverloadedError:
            raise
        except Exception as exc:  # no model at all: flag, never approve silently
            logger.error("nsfw fallback failed (%s)", type(exc).__name__)
            reason = f"{reason}; fallback failed"
    result = output.result if output else None
    scores = result.probabilities() if result else None
    action = image_action(scores, state.config.image_policy)
    detections = [
        NsfwDetection(label=d.label, score=d.score, box=image.scale_box(d.box))
        for d in (result.detections if result else ())
    ]
    return ImageModerationResult(
        is_safe=action == "approve",
        action=action,  # type: ignore[arg-type]
        rating=_RATING[action],  # type: ignore[arg-type]
        scores=NsfwScores(**scores) if scores else None,
        detections=detections,
        image=image.meta(),
        model=ModelRef.of(output.model) if output else None,
        degraded=reason is not None,
        degraded_reason=reason,
    )


async def moderate_image(
    state: IngressState, nsfw: NodeHandle, source: ImageSource
) -> ImageModerationResult:
    """NSFW verdict for one image: action, safe/questionable/unsafe, labelled boxes."""
    return await judge_image(state, nsfw, await load_image(state, source))


def check_post_images(state: IngressState, urls: list[str]) -> NodeHandle:
    """The NSFW node for a post's image URLs, once it exists and the count is in the limit."""
    nsfw = image_node(state, "nsfw", "images")  # 422 feature_not_enabled before any fetch
    limit = state.config.images.max_images_per_post
    if len(urls) > limit:
        raise InvalidInputError(
            "images", f"images has {len(urls)} URLs; the limit is {limit} per post"
        )
    return nsfw


async def moderate_post_images(
    state: IngressState, nsfw: NodeHandle, urls: list[str]
) -> list[PostImageResult]:
    """Fetch, decode and judge every image concurrently; a refused image is an error entry."""

    async def one(index: int, url: str) -> PostImageResult:
        try:
            image = await load_image(state, ImageSource(f"images[{index}]", url=url))
        except ImageInputError as exc:
            error = ErrorDetail(code=exc.code, message=exc.message, field=exc.field)
            return PostImageResult(index=index, status="error", error=error)
        result = await judge_image(state, nsfw, image)
        return PostImageResult(index=index, status="ok", result=result)

    return list(await asyncio.gather(*(one(i, url) for i, url in enumerate(urls))))


# ---- tags ---------------------------------------------------------------------------------
async def tag_image(
    state: IngressState, tagger: NodeHandle, source: ImageSource, top_k: int | None
) -> ImageTagsResult:
    """Tags of one image (CLIP top-k and face-backed tags), with the models behind each."""
    image = await load_image(state, source)
    # The detector (when the graph has it) looks at the image while the tagger tags it.
    detector = state.nodes.get("detector")
    detected = (
        asyncio.create_task(find_objects(state, detector, image)) if detector is not None else None
    )
    reason: str | None = None
    try:
        output: Answer[ImageTags] = await call_node(
            state,
            tagger.predict,
            state.config.timeouts.tagger_s,
            ImageTagRequest(image.decoded.pixels, top_k),
        )
    except Exception as exc:  # any node failure: faces-only tags from the ingress
        try:
            reason = answer_degraded("tagger", exc)
            fallback = await state.fallbacks.tagger.get()  # loaded once, outside the bound
            async with fallback_slot(state, "tagger"):  # bounded: 503 when full
                results = await asyncio.to_thread(
                    fallback.predict_batch, [image.decoded.pixels], [top_k]
                )
        except BaseException:
            if detected is not None:
                detected.cancel()
            raise
        output = Answer(results[0], answers.ModelRef.of(fallback.info))
    tags = output.result
    tag_list = tags.tags
    models = list(tags.models)
    if detected is not None:
        try:
            objects, objects_reason = await detected
        except OverloadedError:  # a full detector queue costs the tags their objects only
            objects, objects_reason = None, "node overloaded"
        if objects is not None:
            tag_list = add_backed_tags(tag_list, objects.result.tags, OBJECTS_SOURCE)
            models.append(objects.model.name)
        else:
            detail = f"objects: {objects_reason}"
            reason = f"{reason}; {detail}" if reason else detail
    return ImageTagsResult(
        tags=[ImageTag(**asdict(tag)) for tag in tag_list],
        faces=FacesResult(
            count=tags.faces.count, boxes=[image.scale_box(box) for box in tags.faces.boxes]
        ),
        models=models,
        image=image.meta(),
        model=ModelRef.of(output.model),
        degraded=reason is not None,
        degraded_reason=reason,
    )


# ---- objects ------------------------------------------------------------------------------
async def find_objects(
    state: IngressState, detector: NodeHandle, image: LoadedImage
) -> tuple[Answer[DetectedObjects] | None, str | None]:
    """The detector node's answer for one image, or None and why it failed.

    Raises:
        OverloadedError: The node's queue is full (503 with Retry-After, as for every node).
    """
    try:
        output: Answer[DetectedObjects] = await call_node(
            state, detector.predict, state.config.timeouts.detector_s, image.decoded.pixels
        )
    except Exception as exc:  # any node failure: no objects, said so
        return None, answer_degraded("detector", exc)
    return output, None


async def detect_objects(
    state: IngressState, detector: NodeHandle, source: ImageSource
) -> ObjectsResult:
    """Objects in one image (label, score, box in original pixels), best first."""
    image = await load_image(state, source)
    output, reason = await find_objects(state, detector, image)
    found = output.result.objects if output is not None else ()
    return ObjectsResult(
        objects=[
            DetectedObject(label=o.label, score=o.score, box=image.scale_box(o.box)) for o in found
        ],
        image=image.meta(),
        model=ModelRef.of(output.model) if output is not None else None,
        degraded=reason is not None,
        degraded_reason=reason,
    )
