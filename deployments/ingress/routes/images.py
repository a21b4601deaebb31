"""Images: ``/api/v1/moderation/image`` (NSFW verdict), ``/api/v1/image/tags`` and
``/api/v1/image/objects``.

An image arrives as JSON ``{"image_url"}`` / ``{"image_base64"}`` or as a multipart upload
(field ``file``); reading that is HTTP's business and happens here, the rest in
``services/images.py``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from configs.ingress import ImageInputConfig
from deployments.ingress.deps import DetectorNode, NsfwNode, State, TaggerNode, api_router
from deployments.ingress.schemas.images import (
    ImageModerationResult,
    ImageRequest,
    ImageTagsResult,
    ObjectsResult,
    TagRequest,
)
from deployments.ingress.services import images
from deployments.ingress.services.images import ImageSource
from models.exceptions import ImageInputError, InvalidInputError

UPLOAD_FIELD = "file"

router = api_router()


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


IMAGE_BODY = _body_doc(ImageRequest)
TAG_BODY = _body_doc(TagRequest)


async def read_image_request(
    request: Request, model: type[ImageRequest], limits: ImageInputConfig
) -> tuple[ImageSource, ImageRequest | None, dict[str, Any]]:
    """Where the request's one image comes from, the parsed JSON body (None for uploads) and
    the upload's other form fields."""
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
        return ImageSource(UPLOAD_FIELD, data=data), None, extra
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
        return ImageSource("image_base64", base64=body.image_base64), body, {}
    return ImageSource("image_url", url=body.image_url or ""), body, {}


def _form_top_k(extra: dict[str, Any]) -> int | None:
    raw = extra.get("top_k")
    if raw is None or raw == "":
        return None
    if not str(raw).isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidInputError("top_k", f"top_k is {raw!r}; send an integer from 1 to 100")
    return int(raw)


@router.post("/api/v1/moderation/image", tags=["Moderation"], openapi_extra=IMAGE_BODY)
async def moderate_image(request: Request, state: State, nsfw: NsfwNode) -> ImageModerationResult:
    """NSFW verdict for one image: action, safe/questionable/unsafe, labelled boxes."""
    source, _, _ = await read_image_request(request, ImageRequest, state.config.images)
    return await images.moderate_image(state, nsfw, source)


@router.post("/api/v1/image/tags", tags=["Image"], openapi_extra=TAG_BODY)
async def tag_image(request: Request, state: State, tagger: TaggerNode) -> ImageTagsResult:
    """Tags of one image (CLIP top-k and face-backed tags), with the models behind each."""
    source, body, extra = await read_image_request(request, TagRequest, state.config.images)
    top_k = body.top_k if isinstance(body, TagRequest) else _form_top_k(extra)
    return await images.tag_image(state, tagger, source, top_k)


@router.post("/api/v1/image/objects", tags=["Image"], openapi_extra=IMAGE_BODY)
async def detect_objects(request: Request, state: State, detector: DetectorNode) -> ObjectsResult:
    """Objects in one image: label, score and box [x, y, width, height], best first."""
    source, _, _ = await read_image_request(request, ImageRequest, state.config.images)
    return await images.detect_objects(state, detector, source)
