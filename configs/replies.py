"""Typed configuration of smart replies.

``RepliesArgs`` is ``args.replies`` in ``serve_config.yaml``; ``ReplyRoutesConfig``
lives under ``replies`` in the ingress's ``user_config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from configs.base import Device, PositiveSeconds
from configs.base import StrictModel as _Strict

# The curated response set shipped with the project (models.replies reads it).
DEFAULT_REPLY_BANK = str(Path(__file__).resolve().parent / "smart_replies.yaml")


class RepliesArgs(_Strict):
    """Builder args of the SmartReply node."""

    enabled: bool = False
    """Run the SmartReply node (`/api/v1/replies/suggest`)."""
    kind: Literal["retrieval", "seq2seq"] = "retrieval"
    """Which replier. "retrieval": replies from the curated bank, ranked with MiniLM (Smart
    Reply); "seq2seq": a generative encoder-decoder checkpoint from `path`."""
    path: str | None = None
    """retrieval: a local MiniLM checkpoint (default the bundled one); seq2seq: the local T5/BART
    style checkpoint directory (required)."""
    bank_path: str = Field(default=DEFAULT_REPLY_BANK, min_length=1)
    """retrieval: the curated response set (YAML, see configs/smart_replies.yaml)."""
    device: Device = "auto"
    max_message_chars: int = Field(default=500, ge=1, le=100_000)
    """Longer messages get no suggestions (reason message_too_long); not an error while within
    the ingress's max_text_chars."""
    min_similarity: float = Field(default=0.4, ge=-1.0, le=1.0)
    """retrieval: an intent needs this MiniLM cosine similarity to the message."""

    @model_validator(mode="after")
    def _path_for_seq2seq(self) -> RepliesArgs:
        if self.enabled and self.kind == "seq2seq" and not self.path:
            raise ValueError(
                'replies.kind="seq2seq" needs replies.path, a local seq2seq checkpoint '
                'directory; or use kind: "retrieval"'
            )
        return self


class ReplyRoutesConfig(_Strict):
    """Limits and timeouts of the smart-reply route (ingress ``user_config``)."""

    max_limit: int = Field(default=3, ge=1, le=5)
    """Largest `limit` (suggestion chips per message; the replier allows 5)."""
    max_context_messages: int = Field(default=20, ge=0, le=1000)
    """Most `context` messages per request (else 422)."""
    timeout_s: PositiveSeconds = 5.0
    """Wait for the SmartReply node."""
