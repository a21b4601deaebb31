"""Typed configuration of the retraining jobs (``configs/pipelines/*.yaml``).

One YAML file is one job: ``python -m pipelines.text_heads --config configs/pipelines/<x>.yaml``.
Unknown keys are an error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["MlflowConfig", "TextHeadJobConfig", "load_job_config"]

# Primary validation metric of each task: what early stopping and promotion compare.
DEFAULT_PROMOTION_METRIC = {"moderation": "macro_auc", "sentiment": "macro_f1"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MlflowConfig(_Strict):
    """Where runs are tracked, what the model is registered as, and when it is promoted."""

    tracking_uri: str | None = Field(
        default=None,
        description=(
            "MLflow tracking URI; default MLFLOW_TRACKING_URI, else "
            "sqlite:///<state_dir>/mlflow.db with artifacts in <state_dir>/mlartifacts."
        ),
    )
    artifact_location: str | None = Field(
        default=None,
        description=(
            "Artifact root of a NEW experiment (an absolute path or URI); default "
            "<state_dir>/mlartifacts for a local store, the server's default otherwise."
        ),
    )
    experiment_name: str = Field(
        default="text-heads", min_length=1, description="MLflow experiment of the runs."
    )
    registered_model_name: str = Field(
        min_length=1, description='Model Registry name, e.g. "heads-moderation".'
    )
    serving_alias: str = Field(
        default="serving",
        min_length=1,
        description="Alias the service loads; promotion moves it to the winning version.",
    )
    promotion_margin: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description=(
            "The candidate must beat the serving version's validation score by MORE than "
            "this (absolute, on the promotion metric) to take the alias."
        ),
    )
    promote: bool = Field(
        default=True, description="Run the promotion step (false: register only)."
    )


class TextHeadJobConfig(_Strict):
    """A text-head training job: data, split, training, tracking and promotion."""

    task: Literal["moderation", "sentiment"] = Field(
        description=(
            '"moderation": Davidson et al. CSV (hate_speech/offensive multi-label head); '
            '"sentiment": VADER ground-truth TSV files (positive/negative/neutral head).'
        )
    )
    data_paths: list[str] = Field(
        min_length=1,
        description=(
            "Labelled files (relative paths are from the current directory). moderation: "
            "CSV with count, hate_speech, offensive_language, neither, class, tweet; "
            "sentiment: tab-separated id, mean rating (-4..4), text."
        ),
    )
    max_rows: int | None = Field(
        default=None,
        ge=20,
        description="Use a seeded random sample of this many rows (tests, quick runs).",
    )
    seed: int = Field(default=0, ge=0, description="Seed of sampling, splits, init and shuffling.")
    test_fraction: float = Field(
        default=0.2,
        gt=0.0,
        lt=0.5,
        description="Held-out TEST share (per class), never trained on: the evaluation report.",
    )
    validation_fraction: float = Field(
        default=0.1,
        gt=0.0,
        lt=0.5,
        description="Validation share (per class): early stopping and promotion.",
    )
    epochs: int = Field(
        default=30, ge=0, le=1000, description="Most passes over the training split (0: untrained)."
    )
    learning_rate: float = Field(default=1e-3, gt=0.0, le=1.0, description="AdamW learning rate.")
    weight_decay: float = Field(default=1e-4, ge=0.0, le=1.0, description="AdamW weight decay.")
    batch_size: int = Field(default=128, ge=1, le=65536, description="Training batch size.")
    hidden_dim: int = Field(default=256, ge=1, le=8192, description="Hidden width of the head.")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="Dropout in the head.")
    early_stopping_patience: int = Field(
        default=4,
        ge=1,
        description="Stop after this many epochs without a better validation score.",
    )
    soft_targets: bool = Field(
        default=True,
        description="moderation: train on annotator vote fractions instead of 0/1 labels.",
    )
    promotion_metric: Literal["macro_auc", "macro_f1", "accuracy"] | None = Field(
        default=None,
        description="Validation metric for early stopping and promotion; default per task "
        "(moderation macro_auc, sentiment macro_f1).",
    )
    embed_batch_size: int = Field(
        default=64, ge=1, le=4096, description="Texts per MiniLM forward pass."
    )
    embedding_cache: bool = Field(
        default=True,
        description="Keep the embeddings in <state_dir>/cache/embeddings (re-runs skip MiniLM).",
    )
    num_workers: int = Field(default=1, ge=1, le=256, description="Ray Train workers.")
    cpus_per_worker: float = Field(default=1.0, gt=0.0, description="CPUs per Ray Train worker.")
    use_gpu: bool | None = Field(
        default=None, description="Train on GPUs; default: when the driver sees one."
    )
    storage_path: str | None = Field(
        default=None,
        description=(
            "Ray Train storage (checkpoints, results); default <state_dir>/ray_results. A run "
            "with an existing name there would resume, so every run gets a fresh name."
        ),
    )
    report_dir: str | None = Field(
        default=None,
        description="Where the evaluation report is written; default <state_dir>/reports.",
    )
    compare_baselines: bool = Field(
        default=True,
        description="Score the embedded default (alt-profanity-check / VADER) on the test split.",
    )
    mlflow: MlflowConfig = Field(description="Tracking, registration and promotion.")

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> TextHeadJobConfig:
        if self.test_fraction + self.validation_fraction >= 0.8:
            raise ValueError(
                f"test_fraction={self.test_fraction} + validation_fraction="
                f"{self.validation_fraction} leaves under 20% for training; lower them"
            )
        return self

    @property
    def metric(self) -> str:
        """The validation metric early stopping and promotion compare."""
        return self.promotion_metric or DEFAULT_PROMOTION_METRIC[self.task]


def load_job_config(path: str | Path) -> TextHeadJobConfig:
    """Read and validate one job YAML; errors name the file and the bad field."""
    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(
            f"job config {str(source)!r} cannot be read ({exc.strerror}); pass an existing "
            "YAML file, e.g. configs/pipelines/moderation_head.yaml"
        ) from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"job config {str(source)!r} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"job config {str(source)!r} must be a YAML mapping of fields")
    try:
        return TextHeadJobConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"job config {str(source)!r} is invalid:\n{exc}") from exc
