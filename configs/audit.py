"""Typed configuration of the moderation audit log (``audit`` in the ingress's ``user_config``).

Every moderation decision the ingress returns is written to the ``moderation_decisions``
collection (MongoDB when ``MONGODB_URL`` is set, else an in-process store), through a bounded
durable queue (a Redis stream when ``REDIS_URL`` is set, else a file in the state directory)
that a background task drains in batches. ``configs/ingress.py`` embeds
``AuditConfig`` in ``IngressConfig``.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from configs.base import StrictModel as _Strict


class AuditConfig(_Strict):
    """The audit/prediction log of moderation decisions, and moderator reviews of them."""

    enabled: bool = True
    """Record every moderation decision and give it a decision_id; false: responses carry
    decision_id null and the review routes answer 422 feature_not_enabled."""
    store_text: bool = False
    """Also store the moderated text (needed to retrain on reviewed decisions); default false:
    only its sha256 is kept."""
    buffer_size: int = Field(default=10_000, ge=1, le=1_000_000)
    """Most decisions queued while waiting to be written; when the queue is full, a new decision
    is dropped, counted (audit_decisions_dropped, /health) and logged."""
    flush_interval_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    """Longest a decision waits in the buffer before a write, in seconds."""
    max_batch: int = Field(default=500, ge=1, le=100_000)
    """Most decisions per insert_many; a full batch is written without waiting."""
    retry_backoff_s: float = Field(default=0.5, gt=0.0, le=600.0)
    """Wait after the first failed write; doubled after each further failure."""
    retry_backoff_max_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    """Longest wait between two write attempts while the store is down."""
    shutdown_flush_s: float = Field(default=5.0, ge=0.0, le=600.0)
    """Longest a stopping ingress replica spends writing queued decisions; what is left stays
    queued for the next replica. Keep it below the deployment's graceful_shutdown_timeout_s."""
    max_note_chars: int = Field(default=2_000, ge=0, le=100_000)
    """Longest moderator note a review may carry."""
    user_id_salt: str = Field(default="socialplay-audit", min_length=1)
    """Public context of the keyed hash (HMAC-SHA256 under SOCIALPLAY_HASH_SECRET) that replaces
    user and reviewer ids (raw ids are never stored); the secret, not this label, keeps them
    private. Changing it changes every later hash."""

    @model_validator(mode="after")
    def _batch_fits_buffer(self) -> AuditConfig:
        if self.max_batch > self.buffer_size:
            raise ValueError(
                f"audit.max_batch={self.max_batch} is above audit.buffer_size="
                f"{self.buffer_size}; a batch is taken from the buffer, so lower max_batch"
            )
        if self.retry_backoff_max_s < self.retry_backoff_s:
            raise ValueError(
                f"audit.retry_backoff_max_s={self.retry_backoff_max_s} is below "
                f"audit.retry_backoff_s={self.retry_backoff_s}; raise it"
            )
        return self
