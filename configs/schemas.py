"""Typed configuration for the serving graph.

``AppArgs`` is what ``serve_config.yaml`` passes as the application's ``args``; the
``*NodeConfig`` models are each deployment's ``user_config`` (applied live by
``reconfigure()``, no restart).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchingConfig(StrictModel):
    """Dynamic request batching of one model node (``@serve.batch``)."""

    max_batch_size: int = Field(
        default=16, ge=1, le=1024, description="Most requests one model call takes together."
    )
    batch_wait_timeout_s: float = Field(
        default=0.005,
        ge=0.0,
        le=10.0,
        description="Longest a request waits for others to fill its batch, in seconds.",
    )


class ModelNodeConfig(StrictModel):
    """``user_config`` of a model node."""

    batching: BatchingConfig = Field(
        default_factory=BatchingConfig, description="Request batching of this node."
    )


class TransformerOptions(StrictModel):
    """Options of a transformers checkpoint loaded from a local directory."""

    path: str | None = Field(
        default=None, description="Local checkpoint directory (save_pretrained layout)."
    )
    device: str = Field(
        default="auto", description='"auto" (GPU when the replica has one), "cpu" or "cuda[:N]".'
    )
    max_length: int | None = Field(
        default=None,
        ge=8,
        le=8192,
        description="Tokens per window; default: the model's own limit (at most 512).",
    )
    stride: int = Field(
        default=64, ge=0, le=512, description="Tokens shared by consecutive windows of a long text."
    )
    max_windows_per_forward: int = Field(
        default=64, ge=1, le=4096, description="Most windows run through the model at once."
    )

    def loader_kwargs(self) -> dict[str, object]:
        """Keyword arguments for the model's ``load`` (empty for embedded defaults)."""
        if getattr(self, "kind", None) != "transformer":
            return {}
        return {
            "max_length": self.max_length,
            "stride": self.stride,
            "max_windows_per_forward": self.max_windows_per_forward,
        }

    @model_validator(mode="after")
    def _stride_below_window(self) -> TransformerOptions:
        if self.max_length is not None and self.stride >= self.max_length // 2:
            raise ValueError(
                f"stride={self.stride} must be below half of max_length={self.max_length}; "
                "lower stride or raise max_length"
            )
        return self


class ModerationModelSpec(TransformerOptions):
    """Which text moderation model a node loads."""

    kind: Literal["profanity", "transformer"] = Field(
        default="profanity",
        description=(
            '"profanity": the embedded alt-profanity-check model; "transformer": a multi-label '
            "toxic-bert style classifier from `path`."
        ),
    )

    @model_validator(mode="after")
    def _path_for_transformer(self) -> ModerationModelSpec:
        if self.kind == "transformer" and not self.path:
            raise ValueError(
                'moderation_model.kind="transformer" needs moderation_model.path, '
                "a local checkpoint directory"
            )
        return self


class SentimentModelSpec(TransformerOptions):
    """Which sentiment model a node loads."""

    kind: Literal["vader", "transformer"] = Field(
        default="vader",
        description=(
            '"vader": the embedded VADER lexicon model; "transformer": an SST-2 style '
            "classifier from `path`."
        ),
    )
    neutral_threshold: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description=(
            "Binary checkpoints only: below this top probability the label is neutral "
            "(0 turns the neutral band off)."
        ),
    )

    def loader_kwargs(self) -> dict[str, object]:
        """Keyword arguments for the model's ``load``, with the neutral band."""
        kwargs = super().loader_kwargs()
        if kwargs:
            kwargs["neutral_threshold"] = self.neutral_threshold
        return kwargs

    @model_validator(mode="after")
    def _path_for_transformer(self) -> SentimentModelSpec:
        if self.kind == "transformer" and not self.path:
            raise ValueError(
                'sentiment_model.kind="transformer" needs sentiment_model.path, '
                "a local checkpoint directory"
            )
        return self


class AppArgs(StrictModel):
    """Arguments of the application builder (``args:`` in ``serve_config.yaml``)."""

    moderation_model: ModerationModelSpec = Field(
        default_factory=ModerationModelSpec, description="Model of the text moderation node."
    )
    sentiment_model: SentimentModelSpec = Field(
        default_factory=SentimentModelSpec, description="Model of the sentiment node."
    )


class LimitsConfig(StrictModel):
    """Request limits enforced by the ingress."""

    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body accepted (else 413)."
    )
    max_text_chars: int = Field(
        default=10_000, ge=1, description="Longest text accepted in one item (else 422)."
    )
    max_batch_texts: int = Field(
        default=64, ge=1, le=4096, description="Most texts in one batch request (else 422)."
    )


class TimeoutsConfig(StrictModel):
    """How long the ingress waits for each node before answering from its fallback."""

    moderation_s: float = Field(default=5.0, gt=0, description="Wait for the moderation node.")
    sentiment_s: float = Field(default=5.0, gt=0, description="Wait for the sentiment node.")
    health_s: float = Field(default=2.0, gt=0, description="Wait for a node's /health answer.")


class ModerationPolicyConfig(StrictModel):
    """Per-category thresholds that turn moderation scores into an action."""

    flag_threshold: float = Field(
        default=0.5, ge=0, le=1, description="Score at or above which a post is flagged."
    )
    reject_threshold: float = Field(
        default=0.9, ge=0, le=1, description="Score at or above which a post is rejected."
    )
    category_flag_thresholds: dict[str, float] = Field(
        default_factory=dict, description="Flag thresholds per category, overriding the default."
    )
    category_reject_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Reject thresholds per category, overriding the default.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModerationPolicyConfig:
        for name, value in [
            *self.category_flag_thresholds.items(),
            *self.category_reject_thresholds.items(),
        ]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold for {name!r} is {value}; use a value in [0, 1]")
        categories = set(self.category_flag_thresholds) | set(self.category_reject_thresholds)
        for category in categories | {"*"}:
            flag = self.category_flag_thresholds.get(category, self.flag_threshold)
            reject = self.category_reject_thresholds.get(category, self.reject_threshold)
            if reject < flag:
                label = "default" if category == "*" else repr(category)
                raise ValueError(
                    f"{label} reject threshold {reject} is below its flag threshold {flag}; "
                    "a reject threshold must be >= the flag threshold"
                )
        return self


class IngressConfig(StrictModel):
    """``user_config`` of the ingress deployment."""

    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Request limits.")
    timeouts: TimeoutsConfig = Field(
        default_factory=TimeoutsConfig, description="Per-node handle call timeouts."
    )
    moderation_policy: ModerationPolicyConfig = Field(
        default_factory=ModerationPolicyConfig, description="Thresholds for moderation actions."
    )
