"""SmartReply node: reply suggestions (``models.reply_model``), batched with ``@serve.batch``.

Retrieval (default): a `SmartReplier` over the curated bank, with MiniLM from
``models.embeddings`` as its encoder; the bank is embedded once when the replica starts. A
batch of requests embeds all its messages (and their context) in ONE encoder call, then ranks
each request. With ``args.text_vectors`` on, that encoder is a `CachingEmbedder`: a message
another node already embedded (a post the moderation head saw) is read from the shared vector
store, and the bank itself is stored there too. With ``text_vectors.encoder: shared`` the
encoder is the Embedder, through its handle (`deployments.nodes.remote_encoder`).
Generative: a `Seq2SeqReplier` from a local checkpoint, same interface.

Moderation is not asked here: the ingress asks the moderation node concurrently and drops the
suggestions of a flagged message (``deployments/ingress/services/replies.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from configs.nodes import TextVectorCacheConfig
from configs.replies import RepliesArgs
from deployments.nodes.text_vectors import TextVectorNodeMixin
from models.answers import Answer
from models.replies import ReplyDecision, ReplyQuery
from models.reply_model import ReplyModel


@serve.deployment(name="SmartReply", max_ongoing_requests=64)
class SmartReply(TextVectorNodeMixin[ReplyQuery, ReplyDecision]):
    """Up to a few short replies to a message, or the reason for none."""

    def __init__(
        self,
        args: RepliesArgs | Mapping[str, Any] | None = None,
        text_vectors: TextVectorCacheConfig | Mapping[str, Any] | None = None,
        encoder: DeploymentHandle[Any] | None = None,
    ) -> None:
        """Load the replier; retrieval embeds through `encoder` (the Embedder's handle) when
        the graph shares it, else through its own MiniLM."""
        self._configure_text_vectors(text_vectors, encoder)
        self.model = ReplyModel.load(
            RepliesArgs.model_validate(args or {}),
            self._cache_encoder,
            encoder=self.remote_encoder,
        )

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def predict(self, requests: list[ReplyQuery]) -> list[Answer[ReplyDecision]]:
        """One decision per request (batched across concurrent requests)."""
        return await self._run_model(requests)
