"""Image routes of the ingress: NSFW moderation of one image, image tags, and the images of a post.

An image arrives as JSON ``{"image_url"}`` / ``{"image_base64"}`` or as a multipart upload
(field ``file``). The ingress fetches (``image_fetch``: SSRF and size guards) and decodes
(``models.images``: pixel cap, truncated or non-image bytes) before any node is called, and
sends the node a decoded array no larger than ``images.max_side_px``; boxes in answers are
scaled back to the original image's pixels.

Each node call has a timeout; when the NSFW or tagger node fails, the same shipped detector
(nudenet, or the face detector) answers from the ingress with ``degraded: true``, and if even
that fails an image is flagged for review, never approved.
"""

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from configs.ingress import ImagePolicyConfig
from deployments.ingress.http import (
    app,
    call_node,
    failure_reason,
    note_degraded,
    require_api_key,
)
from deployments.ingress.image_fetch import ImageFetcher, decode_base64_image
from deployments.ingress.routes.base import RouteGroup
from deployments.ingress.schemas.common import (
    ErrorDetail,
    FacesResult,
    ImageMeta,
    ImageModerationResult,
    ImageRequest,
    ImageTag,
    ImageTagsResult,
    ModelRef,
    ModerationResult,
    NsfwDetection,
    NsfwScores,
    PostImageResult,
    PostModerationResult,
    TagRequest,
)
from models import answers
from models.answers import Answer
from models.exceptions import FeatureNotEnabledError, ImageInputError, InvalidInputError
from models.images import DecodedImage, decode_image
from models.nsfw import NsfwResult
from models.tagger import ImageTagRequest

logger = logging.getLogger("ray.serve")

UPLOAD_FIELD = "file"
_ACTION_ORDER = {"approve": 0, "flag_for_review": 1, "reject": 2}
_RATING = {"approve": "safe", "flag_for_review": "questionable", "reject": "unsafe"}


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body: the JSON model, or a multipart upload in ``file``."""
    upload: dict[str, Any] = {
        "type": "object",
        "properties": {UPLOAD_FIELD: {"type": "string", "format": "binary"}},
        "required": [UPLOAD_FIELD],
    }
    if "top_k" in model.model_fields:
        upload["properties"]["top_k"] = {"type": "integer", "minimum": 1, "maximum": 100}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                "multipart/form-data": {"schema": upload},
            },
        }
    }


@dataclass
class _ImageState:
    """Per-replica image state, created on first use: the fetcher and the fallback models."""

    fetcher: ImageFetcher | None = None
    fallbacks: dict[str, Any] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_NODE_SETTINGS = {"nsfw": "nsfw_model.enabled", "tagger": "tagger_model.enabled"}


def image_node(group: RouteGroup, name: str, field_name: str) -> Any:
    """The image node's handle, or 422 feature_not_enabled naming the setting that enables it."""
    if name not in group.nodes:
        raise FeatureNotEnabledError(
            field_name,
            f"image {'moderation' if name == 'nsfw' else 'tagging'} is not "
            f"enabled in this deployment; set args.{_NODE_SETTINGS[name]}: true in "
            "serve_config.yaml" + (" or send the post without images" if name == "nsfw" else ""),
        )
    return group.node(name, field_name)


def _state(group: RouteGroup) -> _ImageState:
    state: _ImageState | None = getattr(group, "_image_state", None)
    if state is None:
        state = _ImageState()
        group._image_state = state  # type: ignore[attr-defined]
    return state


def _fetcher(group: RouteGroup) -> ImageFetcher:
    state = _state(group)
    if state.fetcher is None:
        state.fetcher = ImageFetcher()
    return state.fetcher


def load_image_fallback(task: str) -> Any:
    """The shipped detector that answers for ``task`` in the ingress when its node cannot."""
    if task == "nsfw":
        from models.nsfw import NudeNetDetector

        return NudeNetDetector.load(num_threads=1)
    from models.tagger import ImageTagModel

    return ImageTagModel.load(None)


async def _fallback(group: RouteGroup, task: str) -> Any:
    state = _state(group)
    async with state.lock:
        if task not in state.fallbacks:
            state.fallbacks[task] = await asyncio.to_thread(load_image_fallback, task)
        return state.fallbacks[task]


# ---- input ------------------------------------------------------------------------------
async def read_image_request(
    group: RouteGroup, request: Request, model: type[ImageRequest]
) -> tuple[bytes, str, ImageRequest | None, dict[str, Any]]:
    """Bytes of the one image in the request, the field it came from, the parsed JSON body
    (None for uploads) and the upload's other form fields."""
    limits = group.config.images
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get(UPLOAD_FIELD)
        if not isinstance(upload, UploadFile):
            raise InvalidInputError(
                UPLOAD_FIELD, f"send the image as a multipart file field named {UPLOAD_FIELD!r}"
            )
        data = await upload.read(limits.max_image_bytes + 1)
        if len(data) > limits.max_image_bytes:
            raise ImageInputError(
                UPLOAD_FIELD,
                f"the upload is over the limit of {limits.max_image_bytes} bytes",
                "image_too_large",
                status=413,
            )
        extra = {k: v for k, v in form.items() if k != UPLOAD_FIELD and isinstance(v, str)}
        return data, UPLOAD_FIELD, None, extra
    try:
        raw = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "invalid JSON"}]
        ) from exc
    try:
        body = model.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc
    if body.image_base64 is not None:
        data = decode_base64_image(body.image_base64, limits.max_image_bytes)
        return data, "image_base64", body, {}
    data = await _fetcher(group).fetch(body.image_url or "", limits, "image_url")
    return data, "image_url", body, {}


async def decode(group: RouteGroup, data: bytes, field_name: str) -> DecodedImage:
    """Decode in a worker thread (CPU work must not block the ingress's event loop)."""
    limits = group.config.images
    return await asyncio.to_thread(
        decode_image, data, field_name, limits.max_pixels, limits.max_side_px
    )


def _meta(decoded: DecodedImage, size_bytes: int) -> ImageMeta:
    return ImageMeta(
        width=decoded.original_width,
        height=decoded.original_height,
        format=decoded.format,
        bytes=size_bytes,
    )


def _scale_box(box: list[int], factor: float) -> list[int]:
    return [round(v * factor) for v in box]


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


async def moderate_decoded(
    group: RouteGroup, decoded: DecodedImage, size_bytes: int
) -> ImageModerationResult:
    """NSFW verdict for one decoded image: node first, then the in-ingress fallback."""
    reason: str | None = None
    output: Answer[NsfwResult] | None = None
    try:
        node = image_node(group, "nsfw", "images")
        output = await call_node(node.predict, group.config.timeouts.nsfw_s, decoded.pixels)
    except Exception as exc:  # any node failure: answer from the fallback, say so
        reason = failure_reason(exc)
        note_degraded("nsfw", reason)
        logger.warning("nsfw node unavailable (%s); using fallback", reason)
    if output is None:
        try:
            fallback = await _fallback(group, "nsfw")
            results = await asyncio.to_thread(fallback.predict_batch, [decoded.pixels])
            output = Answer(results[0], answers.ModelRef.of(fallback.info))
        except Exception as exc:  # no model at all: flag, never approve silently
            logger.error("nsfw fallback failed (%s)", type(exc).__name__)
            reason = f"{reason}; fallback failed"
    result = output.result if output else None
    scores = result.probabilities() if result else None
    action = image_action(scores, group.config.image_policy)
    detections = [
        NsfwDetection(label=d.label, score=d.score, box=_scale_box(list(d.box), decoded.scale))
        for d in (result.detections if result else ())
    ]
    return ImageModerationResult(
        is_safe=action == "approve",
        action=action,  # type: ignore[arg-type]
        rating=_RATING[action],  # type: ignore[arg-type]
        scores=NsfwScores(**scores) if scores else None,
        detections=detections,
        image=_meta(decoded, size_bytes),
        model=ModelRef(**asdict(output.model)) if output else None,
        degraded=reason is not None,
        degraded_reason=reason,
    )


# ---- posts (used by TextRoutes.moderate_post) ------------------------------------------------
def check_post_images(group: RouteGroup, urls: list[str]) -> list[str]:
    """The post's image URLs, once the NSFW node exists and the count is within the limit."""
    image_node(group, "nsfw", "images")  # 422 feature_not_enabled before any fetch
    limit = group.config.images.max_images_per_post
    if len(urls) > limit:
        raise InvalidInputError(
            "images", f"images has {len(urls)} URLs; the limit is {limit} per post"
        )
    return urls


async def moderate_post_images(group: RouteGroup, urls: list[str]) -> list[PostImageResult]:
    """Fetch, decode and judge every image concurrently; a refused image is an error entry."""

    async def one(index: int, url: str) -> PostImageResult:
        field_name = f"images[{index}]"
        try:
            data = await _fetcher(group).fetch(url, group.config.images, field_name)
            decoded = await decode(group, data, field_name)
        except ImageInputError as exc:
            error = ErrorDetail(code=exc.code, message=exc.message, field=exc.field)
            return PostImageResult(index=index, status="error", error=error)
        result = await moderate_decoded(group, decoded, len(data))
        return PostImageResult(index=index, status="ok", result=result)

    return list(await asyncio.gather(*(one(i, url) for i, url in enumerate(urls))))


def combine_post_verdict(
    text: ModerationResult, images: list[PostImageResult]
) -> PostModerationResult:
    """One verdict for a post: the worst of its text and images.

    An image that could not be fetched or decoded makes the post at least flag_for_review
    (category ``image_unchecked``): a post is never approved with an image nobody looked at.
    """
    action = text.action
    flagged = list(text.flagged_categories)
    reasons = [text.degraded_reason] if text.degraded_reason else []
    for item in images:
        if item.result is None:
            candidate, category = "flag_for_review", "image_unchecked"
        else:
            candidate, category = item.result.action, f"image_{item.result.rating}"
            if item.result.degraded_reason:
                reasons.append(f"images[{item.index}]: {item.result.degraded_reason}")
        if _ACTION_ORDER[candidate] > _ACTION_ORDER[action]:
            action = candidate  # type: ignore[assignment]
        if candidate != "approve" and category not in flagged:
            flagged.append(category)
    return PostModerationResult(
        **{
            **text.model_dump(),
            "is_safe": action == "approve",
            "action": action,
            "flagged_categories": flagged,
            "degraded": bool(reasons),
            "degraded_reason": "; ".join(reasons) or None,
        },
        text_moderation=text,
        image_moderation=images,
    )


class ImageRoutes(RouteGroup):
    """NSFW moderation and tagging of single images."""

    @app.post(
        "/api/v1/moderation/image",
        response_model=ImageModerationResult,
        tags=["Moderation"],
        dependencies=[Depends(require_api_key)],
        openapi_extra=_body_doc(ImageRequest),
    )
    async def moderate_image(self, request: Request) -> ImageModerationResult:
        """NSFW verdict for one image: action, safe/questionable/unsafe, labelled boxes."""
        image_node(self, "nsfw", "image")  # before fetching anything
        data, field_name, _, _ = await read_image_request(self, request, ImageRequest)
        decoded = await decode(self, data, field_name)
        return await moderate_decoded(self, decoded, len(data))

    @app.post(
        "/api/v1/image/tags",
        response_model=ImageTagsResult,
        tags=["Image"],
        dependencies=[Depends(require_api_key)],
        openapi_extra=_body_doc(TagRequest),
    )
    async def tag_image(self, request: Request) -> ImageTagsResult:
        """Tags of one image (CLIP top-k and face-backed tags), with the models behind each."""
        image_node(self, "tagger", "image")  # before fetching anything
        data, field_name, body, extra = await read_image_request(self, request, TagRequest)
        top_k = body.top_k if isinstance(body, TagRequest) else _form_top_k(extra)
        decoded = await decode(self, data, field_name)
        item = ImageTagRequest(decoded.pixels, top_k)
        reason: str | None = None
        try:
            node = image_node(self, "tagger", "image")
            output = await call_node(node.predict, self.config.timeouts.tagger_s, item)
        except Exception as exc:  # any node failure: faces-only tags from the ingress
            reason = failure_reason(exc)
            note_degraded("tagger", reason)
            logger.warning("tagger node unavailable (%s); using fallback", reason)
            fallback = await _fallback(self, "tagger")
            results = await asyncio.to_thread(fallback.predict_batch, [decoded.pixels], [top_k])
            output = Answer(results[0], answers.ModelRef.of(fallback.info))
        result = output.result
        faces = result.faces
        return ImageTagsResult(
            tags=[ImageTag(**asdict(tag)) for tag in result.tags],
            faces=FacesResult(
                count=faces.count,
                boxes=[_scale_box(list(box), decoded.scale) for box in faces.boxes],
            ),
            models=list(result.models),
            image=_meta(decoded, len(data)),
            model=ModelRef(**asdict(output.model)),
            degraded=reason is not None,
            degraded_reason=reason,
        )


def _form_top_k(extra: dict[str, Any]) -> int | None:
    raw = extra.get("top_k")
    if raw is None or raw == "":
        return None
    if not str(raw).isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidInputError("top_k", f"top_k is {raw!r}; send an integer from 1 to 100")
    return int(raw)
