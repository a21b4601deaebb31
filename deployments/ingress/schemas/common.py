"""What the HTTP bodies of every resource share: the error body, the model reference, the
request base and the text requests of moderation and sentiment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from models import answers


class RequestBody(BaseModel):
    """Base of request bodies: unknown fields are refused (422 naming the field)."""

    model_config = ConfigDict(extra="forbid")


# The same bound as the other ids (recommendations.max_id_chars' default).
USER_ID_FIELD = Field(
    default=None,
    min_length=1,
    max_length=128,
    description="Who sent the text (1-128 characters); picks the user's sticky A/B arm.",
)


class TextRequest(RequestBody):
    """One text to score."""

    text: StrictStr = Field(description="The text; not empty, at most `max_text_chars`.")
    user_id: StrictStr | None = USER_ID_FIELD


class TextBatchRequest(RequestBody):
    """Several texts to score in one call."""

    texts: list[StrictStr] = Field(
        description="The texts; 1 to `max_batch_texts` items, each not empty."
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

    @classmethod
    def of(cls, model: answers.ModelRef | answers.ModelInfo) -> ModelRef:
        """The HTTP form of the model behind a node's answer (or of a loaded model)."""
        return cls(name=model.name, version=model.version, device=model.device)


class ErrorDetail(BaseModel):
    """What was wrong with the request."""

    code: str = Field(description="Machine-readable error code.")
    message: str = Field(description="What is wrong and how to fix it.")
    field: str | None = Field(default=None, description="The offending field, when there is one.")


class ErrorBody(BaseModel):
    """Body of every error response."""

    error: ErrorDetail
