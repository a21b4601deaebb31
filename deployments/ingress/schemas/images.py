"""Request and response bodies of the image routes (NSFW moderation and tags)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictStr, model_validator

from deployments.ingress.schemas.common import ErrorDetail, ModelRef, RequestBody


class ImageRequest(RequestBody):
    """One image, as a URL to fetch or as base64 bytes (or send a multipart upload instead)."""

    image_url: StrictStr | None = Field(
        default=None, description="http(s) URL of the image; fetched by the service."
    )
    image_base64: StrictStr | None = Field(
        default=None, description="The image file base64-encoded (a data: URL prefix is fine)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ImageRequest:
        if (self.image_url is None) == (self.image_base64 is None):
            raise ValueError("send exactly one of image_url or image_base64")
        return self


class TagRequest(ImageRequest):
    """An image to tag, and how many CLIP tags to return."""

    top_k: int | None = Field(
        default=None, ge=1, le=100, description="CLIP tags to return (default: the node's top_k)."
    )


class ImageMeta(BaseModel):
    """The image as received (before it was shrunk for the models)."""

    width: int
    height: int
    format: str
    bytes: int


class NsfwScores(BaseModel):
    """Probabilities that sum to 1 (see README: how detections map to them)."""

    safe: float
    questionable: float
    unsafe: float


class NsfwDetection(BaseModel):
    """One detected body part; ``box`` is [x, y, width, height] in original image pixels."""

    label: str
    score: float
    box: list[int]


class ImageModerationResult(BaseModel):
    """Moderation verdict for one image."""

    is_safe: bool = Field(description="True only when the action is approve.")
    action: Literal["approve", "flag_for_review", "reject"]
    rating: Literal["safe", "questionable", "unsafe"] = Field(
        description="The action as a rating: approve=safe, flag_for_review=questionable, ..."
    )
    scores: NsfwScores | None = Field(description="Null when no model could judge the image.")
    detections: list[NsfwDetection]
    image: ImageMeta
    model: ModelRef | None
    degraded: bool
    degraded_reason: str | None = None


class PostImageResult(BaseModel):
    """One image of a post: its verdict, or why it could not be checked."""

    index: int = Field(description="Position in the request's `images`.")
    status: Literal["ok", "error"]
    result: ImageModerationResult | None = None
    error: ErrorDetail | None = Field(
        default=None, description="Why the image was not checked (the post is then flagged)."
    )


class ImageTag(BaseModel):
    """One tag and where it came from."""

    tag: str
    score: float | None = Field(
        description="CLIP probability over the candidate tags; null when only a detector backs it."
    )
    sources: list[str] = Field(
        description='Models that produced the tag: "clip", "faces", "objects".'
    )


class FacesResult(BaseModel):
    """Frontal faces found; boxes are [x, y, width, height] in original image pixels."""

    count: int
    boxes: list[list[int]]


class ImageTagsResult(BaseModel):
    """Tags of one image."""

    tags: list[ImageTag]
    faces: FacesResult
    models: list[str] = Field(description="Models that ran on the image.")
    image: ImageMeta
    model: ModelRef
    degraded: bool
    degraded_reason: str | None = None


class DetectedObject(BaseModel):
    """One object; ``box`` is [x, y, width, height] in original image pixels."""

    label: str = Field(description="A label of the detector's checkpoint (COCO's 80 by default).")
    score: float = Field(description="Objectness x class probability.")
    box: list[int]


class ObjectsResult(BaseModel):
    """Objects found in one image, best first."""

    objects: list[DetectedObject]
    image: ImageMeta
    model: ModelRef | None = Field(description="Null when no model could look at the image.")
    degraded: bool = Field(description="True when the detector node failed: objects is empty.")
    degraded_reason: str | None = None
