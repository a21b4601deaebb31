"""Typed configuration for the serving graph.

``AppArgs`` is what ``serve_config.yaml`` passes as the application's ``args``; the
``*NodeConfig`` models are each deployment's ``user_config`` (applied live by
``reconfigure()``, no restart).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from configs.audit import AuditConfig
from configs.base import StrictModel
from configs.experiments import Experiments, check_variant_names
from configs.recommender import RecommendationRoutesConfig, RecommenderArgs
from configs.trends_replies import (
    RepliesArgs,
    ReplyRoutesConfig,
    TrendRoutesConfig,
    TrendsArgs,
)


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


class AppArgs(StrictModel):
    """Arguments of the application builder (``args:`` in ``serve_config.yaml``)."""

    moderation_model: ModerationModelSpec = Field(
        default_factory=ModerationModelSpec, description="Model of the text moderation node."
    )
    sentiment_model: SentimentModelSpec = Field(
        default_factory=SentimentModelSpec, description="Model of the sentiment node."
    )
    nsfw_model: NsfwModelSpec = Field(
        default_factory=NsfwModelSpec, description="The NSFW image node (off by default)."
    )
    tagger_model: TaggerModelSpec = Field(
        default_factory=TaggerModelSpec, description="The image tagger node (off by default)."
    )
    recommender: RecommenderArgs = Field(
        default_factory=RecommenderArgs,
        description="Embedder + Recommender nodes: events, feed, similar posts, interests.",
    )
    trends: TrendsArgs = Field(
        default_factory=TrendsArgs,
        description="Trends node: trending topics and topic sentiment (needs the recommender).",
    )
    replies: RepliesArgs = Field(
        default_factory=RepliesArgs, description="SmartReply node: reply suggestions."
    )
    text_vectors: TextVectorCacheConfig = Field(
        default_factory=TextVectorCacheConfig,
        description=(
            "Embed once: MiniLM vectors shared by the Embedder, head moderation / sentiment "
            "and smart-reply nodes, keyed by encoder version and text hash."
        ),
    )
    moderation_variants: dict[str, ModerationModelSpec] = Field(
        default_factory=dict,
        description=(
            "Other moderation models run side by side, by variant name ([a-z0-9_-], not "
            '"default"): deployment TextModeration-<name>, chosen by ingress experiments.'
        ),
    )
    sentiment_variants: dict[str, SentimentModelSpec] = Field(
        default_factory=dict,
        description=(
            "Other sentiment models run side by side, by variant name: deployment "
            "Sentiment-<name>, chosen by ingress experiments."
        ),
    )

    @model_validator(mode="after")
    def _variant_names(self) -> AppArgs:
        check_variant_names("moderation_variants", self.moderation_variants)
        check_variant_names("sentiment_variants", self.sentiment_variants)
        return self

    @model_validator(mode="after")
    def _trends_need_the_recommender(self) -> AppArgs:
        # Trends read posts from the Recommender's store: without it there is nothing to read.
        if self.trends.enabled and not self.recommender.enabled:
            raise ValueError(
                "trends.enabled is true but recommender.enabled is false; trends read the "
                "posts the recommender stores, so enable the recommender or turn trends off"
            )
        return self


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
    max_image_body_bytes: int = Field(
        default=15_000_000,
        ge=1024,
        description=(
            "Largest body on the image routes (an upload or base64 image; base64 is 4/3 of "
            "the image), instead of max_body_bytes (else 413)."
        ),
    )


class TimeoutsConfig(StrictModel):
    """How long the ingress waits for each node before answering from its fallback."""

    moderation_s: float = Field(default=5.0, gt=0, description="Wait for the moderation node.")
    sentiment_s: float = Field(default=5.0, gt=0, description="Wait for the sentiment node.")
    nsfw_s: float = Field(default=10.0, gt=0, description="Wait for the NSFW node.")
    tagger_s: float = Field(default=10.0, gt=0, description="Wait for the tagger node.")
    health_s: float = Field(default=2.0, gt=0, description="Wait for a node's /health answer.")


class CoalesceConfig(StrictModel):
    """Ingress-side coalescing of single-text calls into one bulk call per node.

    Concurrent single-text requests for the same node (moderation, sentiment) leave the
    ingress as one ``predict_many`` handle call instead of one call each: Ray's per-call cost
    is paid per batch and the node's batch queue fills. Defaults chosen by
    ``python -m bench.embed_bench`` (docs/benchmarks.md, "W3").
    """

    enabled: bool = Field(
        default=True, description="Coalesce single-text node calls (false: one call each)."
    )
    max_batch_size: int = Field(
        default=16, ge=1, le=256, description="Most texts in one coalesced handle call."
    )
    batch_wait_timeout_s: float = Field(
        default=0.002,
        ge=0,
        le=1,
        description="Longest a text waits for others before its call leaves (0: never waits).",
    )
    max_concurrent_batches: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Coalesced calls in flight per node; later texts queue into the next one.",
    )


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


class ImageInputConfig(StrictModel):
    """How the ingress fetches and decodes images (every limit is enforced before a model runs)."""

    max_image_bytes: int = Field(
        default=10_000_000,
        ge=1024,
        description="Largest image file, fetched or uploaded, counted while streaming (else 413).",
    )
    max_pixels: int = Field(
        default=40_000_000,
        ge=1024,
        description="Largest width x height, read from the header before decoding (else 413).",
    )
    max_side_px: int = Field(
        default=1024,
        ge=64,
        le=8192,
        description="Decoded images are shrunk to this longer side before they go to a node.",
    )
    connect_timeout_s: float = Field(
        default=3.0, gt=0, le=60, description="Wait for the image server's TCP/TLS connect."
    )
    read_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="Longest silence between two received chunks."
    )
    total_timeout_s: float = Field(
        default=15.0, gt=0, le=300, description="Whole fetch, all redirects included."
    )
    max_redirects: int = Field(
        default=3, ge=0, le=10, description="Redirects followed; every hop is checked again."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            "Host names or IP literals fetched even when they resolve to loopback, private "
            "or other non-public addresses (internal CDNs; tests). Empty: public only."
        ),
    )
    allowed_content_types: list[str] = Field(
        default_factory=lambda: ["image/"],
        min_length=1,
        description="Content-Type prefixes accepted from image servers.",
    )
    max_images_per_post: int = Field(
        default=10, ge=1, le=100, description="Most images in one moderate request (else 422)."
    )


class ImagePolicyConfig(StrictModel):
    """Thresholds that turn NSFW probabilities into an action for one image."""

    flag_threshold: float = Field(
        default=0.4,
        ge=0,
        le=1,
        description="unsafe or questionable at or above this: flag_for_review.",
    )
    reject_threshold: float = Field(
        default=0.6, ge=0, le=1, description="unsafe at or above this: reject."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ImagePolicyConfig:
        if self.reject_threshold < self.flag_threshold:
            raise ValueError(
                f"image_policy.reject_threshold {self.reject_threshold} is below "
                f"flag_threshold {self.flag_threshold}; it must be >= the flag threshold"
            )
        return self


class CircuitBreakerConfig(StrictModel):
    """Per-node circuit breakers of the ingress (``deployments/circuit.py``)."""

    enabled: bool = Field(
        default=True, description="false: every call goes to its node, however often it fails."
    )
    failure_threshold: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive failed or timed-out calls to one node that open its breaker.",
    )
    open_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "Seconds an open breaker answers from the fallback without calling the node, "
            "before letting probe calls through (half-open)."
        ),
    )
    half_open_max_calls: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Probe calls let through at once while half-open; one success closes it.",
    )


class IngressConfig(StrictModel):
    """``user_config`` of the ingress deployment."""

    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Request limits.")
    timeouts: TimeoutsConfig = Field(
        default_factory=TimeoutsConfig, description="Per-node handle call timeouts."
    )
    moderation_policy: ModerationPolicyConfig = Field(
        default_factory=ModerationPolicyConfig, description="Thresholds for moderation actions."
    )
    images: ImageInputConfig = Field(
        default_factory=ImageInputConfig, description="Image fetching and decoding limits."
    )
    image_policy: ImagePolicyConfig = Field(
        default_factory=ImagePolicyConfig, description="Thresholds for image moderation actions."
    )
    recommendations: RecommendationRoutesConfig = Field(
        default_factory=RecommendationRoutesConfig,
        description="Limits and timeouts of the event and recommendation routes.",
    )
    trends: TrendRoutesConfig = Field(
        default_factory=TrendRoutesConfig,
        description="Limits and timeouts of the trend and topic-sentiment routes.",
    )
    replies: ReplyRoutesConfig = Field(
        default_factory=ReplyRoutesConfig, description="Limits and timeout of smart replies."
    )
    experiments: Experiments = Field(
        default_factory=dict,
        description="A/B and shadow experiments between model variants, by name.",
    )
    audit: AuditConfig = Field(
        default_factory=AuditConfig, description="Audit log of moderation decisions and reviews."
    )
    circuit_breaker: CircuitBreakerConfig = Field(
        default_factory=CircuitBreakerConfig,
        description="Per-node circuit breakers: stop calling a node that keeps failing.",
    )
    coalesce: CoalesceConfig = Field(
        default_factory=CoalesceConfig,
        description="Coalesce concurrent single-text node calls into bulk calls.",
    )
