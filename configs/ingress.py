"""``IngressConfig``: the ingress deployment's ``user_config`` (limits, timeouts,
policies, experiments, audit, breakers, coalescing), applied live by
``reconfigure()``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from configs.audit import AuditConfig
from configs.base import Fraction, PositiveSeconds, StrictModel
from configs.experiments import Experiments
from configs.recommender import RecommendationRoutesConfig
from configs.replies import ReplyRoutesConfig
from configs.trends import TrendRoutesConfig


class LimitsConfig(StrictModel):
    """Request limits enforced by the ingress."""

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest request body accepted (else 413)."""
    max_text_chars: int = Field(default=10_000, ge=1)
    """Longest text accepted in one item (else 422)."""
    max_batch_texts: int = Field(default=64, ge=1, le=4096)
    """Most texts in one batch request (else 422)."""
    max_aspects: int = Field(default=16, ge=1, le=256)
    """Most aspects (terms or categories) one aspect-sentiment request may name (else 422);
    terms the model finds itself are cut to this many."""
    max_aspect_chars: int = Field(default=100, ge=1, le=1000)
    """Longest aspect term accepted (else 422)."""
    max_image_body_bytes: int = Field(default=15_000_000, ge=1024)
    """Largest body on the image routes (an upload or base64 image; base64 is 4/3 of the image),
    instead of max_body_bytes (else 413)."""
    key_rate_per_s: float = Field(default=1000.0, gt=0, le=1_000_000)
    """Requests per second each API key may send on average, per ingress replica (token bucket
    refill rate; above it: 429 with Retry-After). Keys are told apart by a sha256 prefix of the
    X-API-Key header. The default is generous, far above what one replica serves, so only a
    runaway client is throttled; lower it to share capacity fairly between keys."""
    key_burst: int = Field(default=2000, ge=1, le=10_000_000)
    """Requests a key may send at once above its rate (token bucket size)."""
    max_rate_limited_keys: int = Field(default=10_000, ge=1, le=10_000_000)
    """Token buckets kept per replica; the least recently used key's bucket is dropped beyond
    this (it starts full again), so the table never grows without bound."""
    max_concurrent_fallbacks: int = Field(default=8, ge=1, le=1024)
    """Fallback model runs (text and image) at once in this replica while a node fails; more:
    503 with Retry-After, so an open breaker does not move the whole load into the ingress."""
    fallback_slot_wait_s: float = Field(default=5.0, ge=0, le=30)
    """How long a request waits for a free fallback slot before its 503: absorbs the burst of
    in-flight requests that fail together when a node replica dies, while the bound holds (the
    waiters are bounded too, by the Ingress's max_ongoing_requests)."""
    retry_after_s: float = Field(default=1.0, gt=0, le=3600)
    """Retry-After (seconds, rounded up) on 503s for a full fallback bound or a node's full
    queue."""


class TimeoutsConfig(StrictModel):
    """How long the ingress waits for each node before answering from its fallback."""

    moderation_s: PositiveSeconds = 5.0
    """Wait for the moderation node."""
    sentiment_s: PositiveSeconds = 5.0
    """Wait for the sentiment node."""
    nsfw_s: PositiveSeconds = 10.0
    """Wait for the NSFW node."""
    tagger_s: PositiveSeconds = 10.0
    """Wait for the tagger node."""
    detector_s: PositiveSeconds = 10.0
    """Wait for the object detector node."""
    aspects_s: PositiveSeconds = 5.0
    """Wait for the aspect-sentiment node (then the VADER-window fallback answers)."""
    health_s: PositiveSeconds = 2.0
    """Wait for a node's /health answer."""


class CoalesceConfig(StrictModel):
    """Ingress-side coalescing of single-text calls into one bulk call per node.

    Concurrent single-text requests for the same node (moderation, sentiment) leave the
    ingress as one ``predict_many`` handle call instead of one call each: Ray's per-call cost
    is paid per batch and the node's batch queue fills. Defaults chosen by
    ``python -m bench.embed_bench`` (docs/benchmarks.md, "W3").
    """

    enabled: bool = True
    """Coalesce single-text node calls (false: one call each)."""
    max_batch_size: int = Field(default=16, ge=1, le=256)
    """Most texts in one coalesced handle call."""
    batch_wait_timeout_s: float = Field(default=0.002, ge=0, le=1)
    """Longest a text waits for others before its call leaves (0: never waits)."""
    max_concurrent_batches: int = Field(default=4, ge=1, le=64)
    """Coalesced calls in flight per node; later texts queue into the next one."""


def _check_reject_not_below_flag(label: str, flag: float, reject: float) -> None:
    """Refuse a reject threshold below its flag threshold (`label` names the pair)."""
    if reject < flag:
        raise ValueError(
            f"{label} reject threshold {reject} is below its flag threshold {flag}; "
            "a reject threshold must be >= the flag threshold"
        )


class ModerationPolicyConfig(StrictModel):
    """Per-category thresholds that turn moderation scores into an action."""

    flag_threshold: Fraction = 0.5
    """Score at or above which a post is flagged."""
    reject_threshold: Fraction = 0.9
    """Score at or above which a post is rejected."""
    category_flag_thresholds: dict[str, float] = Field(default_factory=dict)
    """Flag thresholds per category, overriding the default."""
    category_reject_thresholds: dict[str, float] = Field(default_factory=dict)
    """Reject thresholds per category, overriding the default."""
    degraded_action: Literal["flag_for_review", "reject"] = "flag_for_review"
    """flag_for_review or reject: the least strict action when the moderation node failed and the
    in-ingress fallback model answered (a degraded answer is never approve)."""

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
            _check_reject_not_below_flag(
                "default" if category == "*" else repr(category), flag, reject
            )
        return self


class ImageInputConfig(StrictModel):
    """How the ingress fetches and decodes images (every limit is enforced before a model runs)."""

    max_image_bytes: int = Field(default=10_000_000, ge=1024)
    """Largest image file, fetched or uploaded, counted while streaming (else 413)."""
    max_pixels: int = Field(default=40_000_000, ge=1024)
    """Largest width x height, read from the header before decoding (else 413)."""
    max_side_px: int = Field(default=1024, ge=64, le=8192)
    """Decoded images are shrunk to this longer side before they go to a node."""
    connect_timeout_s: float = Field(default=3.0, gt=0, le=60)
    """Wait for the image server's TCP/TLS connect."""
    read_timeout_s: float = Field(default=5.0, gt=0, le=120)
    """Longest silence between two received chunks."""
    total_timeout_s: float = Field(default=15.0, gt=0, le=300)
    """Whole fetch, all redirects included."""
    max_redirects: int = Field(default=3, ge=0, le=10)
    """Redirects followed; every hop is checked again."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Host names or IP literals fetched even when they resolve to loopback, private or other
    non-public addresses (internal CDNs; tests). Empty: public only."""
    allowed_content_types: list[str] = Field(default_factory=lambda: ["image/"], min_length=1)
    """Content-Type prefixes accepted from image servers."""
    max_images_per_post: int = Field(default=10, ge=1, le=100)
    """Most images in one moderate request (else 422)."""
    max_concurrent_fetches: int = Field(default=32, ge=1, le=1024)
    """Image fetches in flight at once per ingress replica; each holds a connection and up to
    max_image_bytes of memory, so this bounds both under a flood of image URLs."""
    fetch_slot_wait_s: float = Field(default=0.5, ge=0, le=30)
    """Longest a fetch waits for a free slot when max_concurrent_fetches are in flight; after
    that the request is refused with 503 and Retry-After instead of queueing."""


class ImagePolicyConfig(StrictModel):
    """Thresholds that turn NSFW probabilities into an action for one image."""

    flag_threshold: Fraction = 0.4
    """unsafe or questionable at or above this: flag_for_review."""
    reject_threshold: Fraction = 0.6
    """unsafe at or above this: reject."""

    @model_validator(mode="after")
    def _ordered(self) -> ImagePolicyConfig:
        _check_reject_not_below_flag("image_policy", self.flag_threshold, self.reject_threshold)
        return self


class CircuitBreakerConfig(StrictModel):
    """Per-node circuit breakers of the ingress (``deployments/ingress/circuit.py``)."""

    enabled: bool = True
    """false: every call goes to its node, however often it fails."""
    failure_threshold: int = Field(default=5, ge=1, le=1000)
    """Consecutive failed or timed-out calls to one node that open its breaker."""
    open_s: float = Field(default=5.0, gt=0, le=3600)
    """Seconds an open breaker answers from the fallback without calling the node, before letting
    probe calls through (half-open). Short: a probe is one call, and a node whose replica was
    replaced answers in full again at most this long after it is back."""
    half_open_max_calls: int = Field(default=1, ge=1, le=100)
    """Probe calls let through at once while half-open; one success closes it."""


class IngressConfig(StrictModel):
    """``user_config`` of the ingress deployment."""

    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    """Request limits."""
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    """Per-node handle call timeouts."""
    moderation_policy: ModerationPolicyConfig = Field(default_factory=ModerationPolicyConfig)
    """Thresholds for moderation actions."""
    images: ImageInputConfig = Field(default_factory=ImageInputConfig)
    """Image fetching and decoding limits."""
    image_policy: ImagePolicyConfig = Field(default_factory=ImagePolicyConfig)
    """Thresholds for image moderation actions."""
    recommendations: RecommendationRoutesConfig = Field(default_factory=RecommendationRoutesConfig)
    """Limits and timeouts of the event and recommendation routes."""
    trends: TrendRoutesConfig = Field(default_factory=TrendRoutesConfig)
    """Limits and timeouts of the trend and topic-sentiment routes."""
    replies: ReplyRoutesConfig = Field(default_factory=ReplyRoutesConfig)
    """Limits and timeout of smart replies."""
    experiments: Experiments = Field(default_factory=dict)
    """A/B and shadow experiments between model variants, by name."""
    audit: AuditConfig = Field(default_factory=AuditConfig)
    """Audit log of moderation decisions and reviews."""
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    """Per-node circuit breakers: stop calling a node that keeps failing."""
    coalesce: CoalesceConfig = Field(default_factory=CoalesceConfig)
    """Coalesce concurrent single-text node calls into bulk calls."""
