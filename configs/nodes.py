"""Typed configuration of the model nodes: which model each loads (``args``) and its
``user_config`` (batching, registered model, result cache), applied live by
``reconfigure()``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from configs.base import StrictModel, section


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


def _key_prefix_field(default: str, description: str) -> Any:
    return Field(default=default, min_length=1, max_length=64, description=description)


def _local_max_entries_field(default: int, description: str) -> Any:
    return Field(default=default, ge=1, le=10_000_000, description=description)


def _redis_timeout_field(costs: str) -> Any:
    """Connect and read timeout of a Redis-backed store (what a dead Redis costs `costs`)."""
    description = f"Redis connect and read timeout: what a dead Redis costs {costs}."
    return Field(default=0.1, gt=0.0, le=5.0, description=description)


def _redis_retry_field(what: str) -> Any:
    """How long a Redis-backed store (`what`) is skipped after an error."""
    description = f"After a Redis error {what} is skipped for this long, then tried again."
    return Field(default=5.0, ge=0.0, le=3600.0, description=description)


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
    key_prefix: str = _key_prefix_field(
        "sp:cache:", "Start of every cache key (followed by the sha256 of node, model, input)."
    )
    socket_timeout_s: float = _redis_timeout_field("a batch")
    retry_s: float = _redis_retry_field("the cache")
    local_max_entries: int = _local_max_entries_field(
        10_000, "Without REDIS_URL: most results the in-process LRU keeps per replica."
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
    key_prefix: str = _key_prefix_field(
        "sp:vec:", "Redis only: start of every vector key (one per environment)."
    )
    local_max_entries: int = _local_max_entries_field(
        20_000,
        "Without REDIS_URL: most vectors the in-process LRU keeps per replica (1.5 KiB each).",
    )
    socket_timeout_s: float = _redis_timeout_field("one batch")
    retry_s: float = _redis_retry_field("the store")


class ModelNodeConfig(StrictModel):
    """``user_config`` of a model node."""

    batching: BatchingConfig = section(BatchingConfig, "Request batching of this node.")
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
    cache: ResultCacheConfig = section(
        ResultCacheConfig, "Result cache keyed by input and model version (off by default)."
    )


class TextClassifierSpec(StrictModel):
    """Which text classifier a node loads: what moderation and sentiment share.

    Each task's spec names its `kind` choices (its embedded default first) and its
    `config_field`; the options of a transformers checkpoint loaded from a local directory,
    and the checks, are written once, here.
    """

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

    kind: str = Field(
        description="Which model: the task's embedded default, a checkpoint or a head."
    )
    registry: RegisteredModelRef | None = Field(
        default=None,
        description='kind "head" only: load the head from the MLflow Model Registry.',
    )

    # Prefix of this block in serve_config.yaml's args, for error messages.
    config_field: ClassVar[str] = "model"

    def loader_kwargs(self) -> dict[str, object]:
        """Keyword arguments for the model's ``load`` (empty for embedded defaults)."""
        if self.kind != "transformer":
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
    def _consistent(self) -> Self:
        """Refuse the first broken rule with a message naming the fields and the fix."""
        field, kind, onnx = self.config_field, self.kind, self.backend == "onnx"
        rules = (
            (
                self.max_length is not None and self.stride >= self.max_length // 2,
                f"stride={self.stride} must be below half of max_length={self.max_length}; "
                "lower stride or raise max_length",
            ),
            (
                onnx and kind != "transformer",
                f"{field}.backend is 'onnx' but {field}.kind is {kind!r}; the ONNX backend "
                'serves kind "transformer" checkpoints only, so set kind: transformer or '
                "backend: torch",
            ),
            (
                onnx and not self.onnx_path,
                f"{field}.backend is 'onnx' but {field}.onnx_path is empty; set onnx_path "
                "to a directory written by `python -m pipelines.export_onnx --model "
                "classifier`, or use backend 'torch'",
            ),
            (
                onnx and self.device.strip().lower() not in ("auto", "cpu"),
                f"{field}.backend 'onnx' runs on CPU, but {field}.device is {self.device!r}; "
                "set device to 'cpu' (or 'auto'), or use backend 'torch' for a GPU",
            ),
            (
                not onnx and self.onnx_path is not None,
                f"{field}.onnx_path is set but {field}.backend is 'torch', so it would be "
                "ignored; set backend: onnx to serve it, or remove onnx_path",
            ),
            (
                kind == "transformer" and not self.path and not onnx,
                f'{field}.kind="transformer" needs {field}.path, a local checkpoint directory '
                "(or backend: onnx with onnx_path)",
            ),
            (
                kind == "head" and (self.path is None) == (self.registry is None),
                f'{field}.kind="head" needs exactly one of {field}.path (a head checkpoint '
                f"directory) or {field}.registry (a registered model); got path={self.path!r}, "
                f"registry={self.registry!r}",
            ),
            (
                kind != "head" and self.registry is not None,
                f'{field}.registry is only used with kind="head" (kind is {kind!r}); '
                'remove it or set kind: "head"',
            ),
        )
        for broken, message in rules:
            if broken:
                raise ValueError(message)
        return self


def _kind_field(embedded: str, embedded_model: str, transformer: str) -> Any:
    """The `kind` of a text task: its embedded model (the default), a checkpoint or a head."""
    description = (
        f'"{embedded}": the embedded {embedded_model} model; "transformer": {transformer} '
        'classifier from `path`; "head": a MiniLM embedding head (pipelines/text_heads.py) '
        "from `path` or `registry`."
    )
    return Field(default=embedded, description=description)


class ModerationModelSpec(TextClassifierSpec):
    """Which text moderation model a node loads."""

    kind: Literal["profanity", "transformer", "head"] = _kind_field(
        "profanity", "alt-profanity-check", "a multi-label toxic-bert style"
    )

    config_field: ClassVar[str] = "moderation_model"


class SentimentModelSpec(TextClassifierSpec):
    """Which sentiment model a node loads."""

    kind: Literal["vader", "transformer", "head"] = _kind_field(
        "vader", "VADER lexicon", "an SST-2 style"
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

    config_field: ClassVar[str] = "sentiment_model"

    def loader_kwargs(self) -> dict[str, object]:
        """Keyword arguments for the model's ``load``, with the neutral band."""
        kwargs = super().loader_kwargs()
        if kwargs:
            kwargs["neutral_threshold"] = self.neutral_threshold
        return kwargs


# The spec of each text task (models.text_classifier.SUPPORTED_TASKS loads what they name).
TEXT_CLASSIFIER_SPECS: dict[str, type[TextClassifierSpec]] = {
    "moderation": ModerationModelSpec,
    "sentiment": SentimentModelSpec,
}


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
