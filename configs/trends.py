"""Typed configuration of trends and topic sentiment.

``TrendsArgs`` is ``args.trends`` in ``serve_config.yaml``; ``TrendsNodeConfig`` is the
Trends deployment's ``user_config``; ``TrendRoutesConfig`` lives under ``trends`` in the
ingress's ``user_config``.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from configs.base import PositiveSeconds
from configs.base import StrictModel as _Strict


class TrendsArgs(_Strict):
    """Builder args of the Trends node (needs the recommender: it reads its post store)."""

    enabled: bool = False
    """Run the Trends node (`/api/v1/trends`, `/api/v1/sentiment/topics/{topic}`); it needs
    `recommender.enabled`. Off: those routes answer 422 feature_not_enabled."""


class TrendDetectorConfig(_Strict):
    """The tuning of `models.trends.TrendConfig` an operator may want to change."""

    min_cluster_posts: int = Field(default=10, ge=2, le=100_000)
    """Fewest posts in the window for a trend."""
    min_growth: float = Field(default=1.5, gt=1.0, le=1000.0)
    """Smallest growth (cur + 1) / (prev + 1) against the previous window."""
    kmeans_clusters: int = Field(default=128, ge=1, le=4096)
    """Upper bound on k-means clusters per run."""


class TrendsNodeConfig(_Strict):
    """``user_config`` of the Trends deployment: the background loop and its bounds."""

    period_s: float = Field(default=300.0, ge=1.0, le=86_400.0)
    """Seconds between two background runs (each labels new posts, then detects)."""
    dirty_min_interval_s: float = Field(default=5.0, ge=0.0, le=86_400.0)
    """A read of the background window after new posts arrived recomputes it at once when the
    last run is at least this old; a younger one is answered `stale: true` with
    `next_run_in_s` (a stream of posts must not turn every read into a full run)."""
    window_hours: float = Field(default=24.0, ge=1.0, le=168.0)
    """Window the background run computes; compared with the window before it."""
    max_posts: int = Field(default=200_000, ge=100, le=1_000_000)
    """Most posts read from the store per background run (both windows together, newest first);
    the 100k-per-window benchmark is docs/benchmarks.md 'Trends'."""
    on_demand_max_posts: int = Field(default=50_000, ge=100, le=1_000_000)
    """Most posts read for a request with another window, or for topic sentiment (bounds request
    latency); answers say `truncated` when it was hit."""
    on_demand_cache_s: float = Field(default=60.0, ge=0.0)
    """How long an on-demand result (other window) is reused, in seconds."""
    top_trends: int = Field(default=50, ge=1, le=500)
    """Trends kept per run (requests take a prefix)."""
    label_batch_size: int = Field(default=256, ge=1, le=4096)
    """Texts per Sentiment handle call when labelling new posts."""
    label_timeout_s: PositiveSeconds = 60.0
    """Wait for one labelling call to the Sentiment node."""
    store_timeout_s: PositiveSeconds = 60.0
    """Wait for the Recommender to return the posts."""
    detector: TrendDetectorConfig = Field(default_factory=TrendDetectorConfig)
    """Trend detection thresholds."""


class TrendRoutesConfig(_Strict):
    """Limits and timeouts of the trend routes (ingress ``user_config``)."""

    min_window_hours: float = Field(default=1.0, gt=0)
    """Shortest window a request may ask for (else 422)."""
    max_window_hours: float = Field(default=168.0, gt=0, le=8760.0)
    """Longest window (else 422); a week."""
    max_limit: int = Field(default=50, ge=1, le=500)
    """Largest `limit` (else 422)."""
    max_topic_chars: int = Field(default=100, ge=1, le=1000)
    """Longest topic keyword or phrase (else 422)."""
    timeout_s: PositiveSeconds = 30.0
    """Wait for the Trends node (an on-demand window may compute first)."""

    @model_validator(mode="after")
    def _ordered(self) -> TrendRoutesConfig:
        if self.max_window_hours < self.min_window_hours:
            raise ValueError(
                f"trends.max_window_hours={self.max_window_hours} is below min_window_hours="
                f"{self.min_window_hours}; raise it"
            )
        return self
