"""Request and response bodies of the HTTP API (kept apart from internal types)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The same bound as the other ids (recommendations.max_id_chars' default).
USER_ID_FIELD = Field(
    default=None,
    min_length=1,
    max_length=128,
    description="Who sent the text (1-128 characters); picks the user's sticky A/B arm.",
)


class TextRequest(_Request):
    """One text to score."""

    text: StrictStr = Field(description="The text; not empty, at most `max_text_chars`.")
    user_id: StrictStr | None = USER_ID_FIELD


class TextBatchRequest(_Request):
    """Several texts to score in one call."""

    texts: list[StrictStr] = Field(
        description="The texts; 1 to `max_batch_texts` items, each not empty."
    )
    user_id: StrictStr | None = USER_ID_FIELD


class ModerateRequest(_Request):
    """A post to moderate before it is published."""

    content: StrictStr = Field(description="The post's text.")
    images: list[StrictStr] | None = Field(
        default=None, description="Image URLs of the post (needs the image moderation nodes)."
    )
    user_id: StrictStr | None = USER_ID_FIELD


VARIANT_FIELD = Field(
    default=None, description="Variant node that answered; null: the main node or a fallback."
)
EXPERIMENT_FIELD = Field(
    default=None, description="Experiment that routed the request; null when none did."
)


class ModelRef(BaseModel):
    """Which model produced an answer."""

    name: str
    version: str
    device: str


class ModerationResult(BaseModel):
    """Moderation verdict for one text."""

    is_safe: bool = Field(description="True only when the action is approve.")
    action: Literal["approve", "flag_for_review", "reject"]
    scores: dict[str, float] = Field(description="Probability per category the model has.")
    overall: float = Field(description="Highest category score (0 when no model answered).")
    flagged_categories: list[str] = Field(description="Categories at or over their threshold.")
    model: ModelRef | None = Field(description="Model that answered; null when none could.")
    degraded: bool = Field(description="True when a fallback answered instead of the node.")
    degraded_reason: str | None = Field(default=None, description="Why the answer is degraded.")
    variant: str | None = VARIANT_FIELD
    experiment: str | None = EXPERIMENT_FIELD
    decision_id: str | None = Field(
        default=None,
        description=(
            "Id of this decision in the audit log (POST /api/v1/moderation/{decision_id}/review); "
            "null when the audit log is off."
        ),
    )


class ModerationBatchResult(BaseModel):
    """Moderation verdicts, one per input text, in order."""

    results: list[ModerationResult]


class ImageRequest(_Request):
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
    sources: list[str] = Field(description='Models that produced the tag: "clip", "faces".')


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


class PostModerationResult(ModerationResult):
    """Moderation verdict for a post: its text and every image (worst of them wins)."""

    text_moderation: ModerationResult = Field(description="Verdict on the post's text.")
    image_moderation: list[PostImageResult] = Field(
        default_factory=list, description="Per-image verdicts, in the order of `images`."
    )


class SentimentScores(BaseModel):
    """Probability (or share) per sentiment label."""

    positive: float
    negative: float
    neutral: float | None = Field(description="Null for binary models that have no neutral class.")


class SentimentResult(BaseModel):
    """Sentiment of one text."""

    label: Literal["positive", "negative", "neutral"]
    scores: SentimentScores
    confidence: float
    compound: float | None = Field(default=None, description="VADER's compound score, if VADER.")
    model: ModelRef
    degraded: bool
    degraded_reason: str | None = None
    variant: str | None = VARIANT_FIELD
    experiment: str | None = EXPERIMENT_FIELD


class SentimentBatchResult(BaseModel):
    """Sentiment results, one per input text, in order."""

    results: list[SentimentResult]


class ErrorDetail(BaseModel):
    """What was wrong with the request."""

    code: str = Field(description="Machine-readable error code.")
    message: str = Field(description="What is wrong and how to fix it.")
    field: str | None = Field(default=None, description="The offending field, when there is one.")


class ErrorBody(BaseModel):
    """Body of every error response."""

    error: ErrorDetail
