"""Typed configuration of the model nodes: which model each loads (``args``) and its
``user_config`` (batching, registered model, result cache), applied live by
``reconfigure()``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from configs.base import StrictModel


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


class RegisteredModelRef(StrictModel):
    """A head model in the MLflow Model Registry, by name and alias or version."""

    model_name: str = Field(
        min_length=1, description='Registered model name, e.g. "heads-moderation".'
    )
    alias: str | None = Field(
        default=None,
        description='Alias to load (e.g. "serving"); resolved to a version when loaded.',
    )
    version: int | None = Field(default=None, ge=1, description="Exact version to load.")
    tracking_uri: str | None = Field(
        default=None,
        description=(
            "MLflow tracking URI; default MLFLOW_TRACKING_URI, else the local sqlite store "
            "in the state dir (sqlite:///<state_dir>/mlflow.db)."
        ),
    )

    @model_validator(mode="after")
    def _alias_or_version(self) -> RegisteredModelRef:
        if (self.alias is None) == (self.version is None):
            raise ValueError(
                f"registry ref for {self.model_name!r} has alias={self.alias!r} and "
                f"version={self.version!r}; set exactly one of them"
            )
        return self


class ResultCacheConfig(StrictModel):
    """Result cache of a model node: answers keyed by the input and the model version."""

    enabled: bool = Field(
        default=False,
        description=(
            "Cache results (TextModeration and Sentiment only). Redis when REDIS_URL is set, "
            "else a bounded in-process LRU per replica."
        ),
    )
    ttl_s: float = Field(
        default=3600.0,
        gt=0.0,
        le=30 * 86400.0,
        description="Seconds a cached result lives; a new model version never reads old ones.",
    )
    key_prefix: str = Field(
        default="sp:cache:",
        min_length=1,
        max_length=64,
        description="Start of every cache key (followed by the sha256 of node, model, input).",
    )
    socket_timeout_s: float = Field(
        default=0.1,
        gt=0.0,
        le=5.0,
        description="Redis connect and read timeout: what a dead Redis costs a batch.",
    )
    retry_s: float = Field(
        default=5.0,
        ge=0.0,
        le=3600.0,
        description="After a Redis error the cache is skipped for this long, then tried again.",
    )
    local_max_entries: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Without REDIS_URL: most results the in-process LRU keeps per replica.",
    )


class TextVectorCacheConfig(StrictModel):
    """Embed once: MiniLM vectors shared by every node that embeds post text.

    The Embedder, head moderation / sentiment and retrieval smart-reply nodes look a text's
    vector up (by encoder name, version and text hash) before running MiniLM, and store what
    they compute, so a post embedded by one feature is not encoded again by the next.
    """

    enabled: bool = Field(
        default=True,
        description=(
            "Share vectors between nodes. Redis when REDIS_URL is set (shared by every node "
            "and replica), else a bounded in-process LRU per replica (reuse within one node "
            "only). false: each node runs its encoder on every text, as before."
        ),
    )
    ttl_s: float = Field(
        default=7 * 86400.0,
        gt=0.0,
        le=90 * 86400.0,
        description=(
            "Redis only: seconds a vector lives after it is stored. Keys name the encoder "
            "version, so a new model never reads old vectors; this only bounds memory."
        ),
    )
    key_prefix: str = Field(
        default="sp:vec:",
        min_length=1,
        max_length=64,
        description="Redis only: start of every vector key (one per environment).",
    )
    local_max_entries: int = Field(
        default=20_000,
        ge=1,
        le=10_000_000,
        description=(
            "Without REDIS_URL: most vectors the in-process LRU keeps per replica (1.5 KiB each)."
        ),
    )
    socket_timeout_s: float = Field(
        default=0.1,
        gt=0.0,
        le=5.0,
        description="Redis connect and read timeout: what a dead Redis costs one batch.",
    )
    retry_s: float = Field(
        default=5.0,
        ge=0.0,
        le=3600.0,
        description="After a Redis error the store is skipped for this long, then tried again.",
    )


class ModelNodeConfig(StrictModel):
    """``user_config`` of a model node."""

    batching: BatchingConfig = Field(
        default_factory=BatchingConfig, description="Request batching of this node."
    )
    model: RegisteredModelRef | None = Field(
        default=None,
        description=(
            "Moderation/Sentiment nodes: serve this registered head instead of the model "
            "from the application args; a change is loaded and swapped in live (no restart; "
            "requests in flight finish on the old model). Unset: keep the current model."
        ),
    )
    registry_poll_s: float = Field(
        default=30.0,
        ge=0.0,
        le=86400.0,
        description=(
            "When the served registered head is named by an alias (`model` here or the "
            "application args' `registry`): re-resolve the alias this often and swap in the "
            "version it points to, without a restart. 0 turns alias following off."
        ),
    )
    cache: ResultCacheConfig = Field(
        default_factory=ResultCacheConfig,
        description="Result cache keyed by input and model version (off by default).",
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
    backend: Literal["torch", "onnx"] = Field(
        default="torch",
        description=(
            'kind "transformer" only: "torch" (the checkpoint at `path`) or "onnx" (a gated '
            "artifact at `onnx_path` written by `python -m pipelines.export_onnx --model "
            "classifier`, run with onnxruntime on CPU; windows, labels and scores as torch)."
        ),
    )
    onnx_path: str | None = Field(
        default=None,
        description=(
            "backend onnx: directory with model.onnx, tokenizer, config.json and a passing "
            "gate.json; an artifact without a passing accuracy gate is refused at load."
        ),
    )
    onnx_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="backend onnx: onnxruntime intra-op threads per call; 0 = one per core.",
    )

    # Prefix of this block in serve_config.yaml's args, for error messages.
    config_field: ClassVar[str] = "model"

    def loader_kwargs(self) -> dict[str, object]:
        """Keyword arguments for the model's ``load`` (empty for embedded defaults)."""
        if getattr(self, "kind", None) != "transformer":
            return {}
        kwargs: dict[str, object] = {
            "max_length": self.max_length,
            "stride": self.stride,
            "max_windows_per_forward": self.max_windows_per_forward,
        }
        if self.backend == "onnx":
            kwargs.update(backend="onnx", onnx_path=self.onnx_path, onnx_threads=self.onnx_threads)
        return kwargs

    @model_validator(mode="after")
    def _stride_below_window(self) -> TransformerOptions:
        if self.max_length is not None and self.stride >= self.max_length // 2:
            raise ValueError(
                f"stride={self.stride} must be below half of max_length={self.max_length}; "
                "lower stride or raise max_length"
            )
        return self

    @model_validator(mode="after")
    def _backend_fields(self) -> TransformerOptions:
        field, kind = self.config_field, getattr(self, "kind", None)
        if self.backend == "onnx":
            if kind != "transformer":
                raise ValueError(
                    f"{field}.backend is 'onnx' but {field}.kind is {kind!r}; the ONNX backend "
                    f'serves kind "transformer" checkpoints only, so set kind: transformer or '
                    "backend: torch"
                )
            if not self.onnx_path:
                raise ValueError(
                    f"{field}.backend is 'onnx' but {field}.onnx_path is empty; set onnx_path "
                    "to a directory written by `python -m pipelines.export_onnx --model "
                    "classifier`, or use backend 'torch'"
                )
            if self.device.strip().lower() not in ("auto", "cpu"):
                raise ValueError(
                    f"{field}.backend 'onnx' runs on CPU, but {field}.device is "
                    f"{self.device!r}; set device to 'cpu' (or 'auto'), or use backend 'torch' "
                    "for a GPU"
                )
        elif self.onnx_path is not None:
            raise ValueError(
                f"{field}.onnx_path is set but {field}.backend is 'torch', so it would be "
                "ignored; set backend: onnx to serve it, or remove onnx_path"
            )
        return self


def _check_head_source(
    field: str, kind: str, path: str | None, registry: RegisteredModelRef | None
) -> None:
    """A head loads from exactly one place; other kinds take no registry ref."""
    if kind == "head" and (path is None) == (registry is None):
        raise ValueError(
            f'{field}.kind="head" needs exactly one of {field}.path (a head checkpoint '
            f"directory) or {field}.registry (a registered model); got path={path!r}, "
            f"registry={registry!r}"
        )
    if kind != "head" and registry is not None:
        raise ValueError(
            f'{field}.registry is only used with kind="head" (kind is {kind!r}); '
            'remove it or set kind: "head"'
        )


class ModerationModelSpec(TransformerOptions):
    """Which text moderation model a node loads."""

    kind: Literal["profanity", "transformer", "head"] = Field(
        default="profanity",
        description=(
            '"profanity": the embedded alt-profanity-check model; "transformer": a multi-label '
            'toxic-bert style classifier from `path`; "head": a MiniLM embedding head '
            "(pipelines/text_heads.py) from `path` or `registry`."
        ),
    )
    registry: RegisteredModelRef | None = Field(
        default=None,
        description='kind "head" only: load the head from the MLflow Model Registry.',
    )

    config_field: ClassVar[str] = "moderation_model"

    @model_validator(mode="after")
    def _path_for_transformer(self) -> ModerationModelSpec:
        if self.kind == "transformer" and not self.path and self.backend == "torch":
            raise ValueError(
                'moderation_model.kind="transformer" needs moderation_model.path, '
                "a local checkpoint directory (or backend: onnx with onnx_path)"
            )
        _check_head_source("moderation_model", self.kind, self.path, self.registry)
        return self


class SentimentModelSpec(TransformerOptions):
    """Which sentiment model a node loads."""

    kind: Literal["vader", "transformer", "head"] = Field(
        default="vader",
        description=(
            '"vader": the embedded VADER lexicon model; "transformer": an SST-2 style '
            'classifier from `path`; "head": a MiniLM embedding head '
            "(pipelines/text_heads.py) from `path` or `registry`."
        ),
    )
    registry: RegisteredModelRef | None = Field(
        default=None,
        description='kind "head" only: load the head from the MLflow Model Registry.',
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

    config_field: ClassVar[str] = "sentiment_model"

    @model_validator(mode="after")
    def _path_for_transformer(self) -> SentimentModelSpec:
        if self.kind == "transformer" and not self.path and self.backend == "torch":
            raise ValueError(
                'sentiment_model.kind="transformer" needs sentiment_model.path, '
                "a local checkpoint directory (or backend: onnx with onnx_path)"
            )
        _check_head_source("sentiment_model", self.kind, self.path, self.registry)
        return self


class NsfwModelSpec(StrictModel):
    """The NSFW image node: nudenet's shipped ONNX detector and how labels map to ratings."""

    enabled: bool = Field(
        default=False,
        description=(
            "Run the NSFW node (image moderation routes); off keeps a text-only graph small. "
            "serve_config.yaml turns it on."
        ),
    )
    path: str | None = Field(
        default=None,
        description="Another ONNX file of the same layout; default the 320n.onnx nudenet ships.",
    )
    min_score: float = Field(
        default=0.2, ge=0.0, le=1.0, description="Detections below this confidence are dropped."
    )
    unsafe_labels: list[str] | None = Field(
        default=None,
        description=(
            "Detector labels whose score is the `unsafe` probability; default the exposed "
            "genitalia, female breast, buttocks and anus labels."
        ),
    )
    questionable_labels: list[str] | None = Field(
        default=None,
        description=(
            "Labels whose score feeds `questionable`; default the covered genitalia, female "
            "breast, buttocks and anus labels."
        ),
    )
    num_threads: int = Field(
        default=0, ge=0, le=64, description="onnxruntime threads per replica; 0 = its default."
    )


class TaggerModelSpec(StrictModel):
    """The image tagger node: CLIP zero-shot (when `path` is set) plus face-backed tags."""

    enabled: bool = Field(default=False, description="Run the tagger node (`/api/v1/image/tags`).")
    path: str | None = Field(
        default=None,
        description=(
            "Local CLIP checkpoint directory (CLIPModel + CLIPProcessor, save_pretrained "
            "layout). Unset: only the tags the face detector supports."
        ),
    )
    device: str = Field(
        default="auto", description='"auto" (GPU when the replica has one), "cpu" or "cuda[:N]".'
    )
    tags: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Candidate tags; default the design document's 15 tags.",
    )
    top_k: int = Field(default=5, ge=1, le=100, description="CLIP tags returned per image.")
    prompt_template: str = Field(
        default="a photo of {tag}", description="Text CLIP scores for each tag; has `{tag}`."
    )

    @model_validator(mode="after")
    def _template_has_tag(self) -> TaggerModelSpec:
        if "{tag}" not in self.prompt_template:
            raise ValueError(
                f"tagger_model.prompt_template={self.prompt_template!r} has no {{tag}} "
                'placeholder; use something like "a photo of {tag}"'
            )
        return self
