"""The reply model a SmartReply node serves: a reply suggester behind ``predict_batch``.

Retrieval (default): a `SmartReplier` over the curated bank with MiniLM as its encoder. A
batch of requests embeds all its messages (and their context) in ONE encoder call, then ranks
each request against those vectors (`_PrecomputedEncoder`). Generative: a `Seq2SeqReplier`
from a local checkpoint, same interface.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from configs.replies import RepliesArgs
from models.answers import ModelInfo
from models.embeddings import MiniLMEmbedder
from models.replies import (
    ReplyBank,
    ReplyConfig,
    ReplyDecision,
    ReplyQuery,
    ReplySuggester,
    Seq2SeqConfig,
    Seq2SeqReplier,
    SmartReplier,
)
from models.text_vectors import TextEncoder


class _PrecomputedEncoder:
    """MiniLM encoder that first looks texts up among the vectors of the current batch.

    `ReplyModel.predict_batch` embeds the batch's texts in one call and puts them here; the
    replier then asks for them one request at a time and gets them without a model call.
    Texts not found (none, when the replier embeds what was expected) are embedded.
    """

    def __init__(self, embedder: TextEncoder) -> None:
        self.embedder = embedder
        # Per thread: a batch runs in a worker thread; its lookups must not see another's.
        self._local = threading.local()

    def set_batch(self, vectors: dict[str, np.ndarray]) -> None:
        self._local.vectors = vectors

    def __call__(self, texts: list[str]) -> np.ndarray:
        known: dict[str, np.ndarray] = getattr(self._local, "vectors", {})
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        found = dict(zip(missing, self.embedder.embed(missing), strict=True)) if missing else {}
        return np.stack([known[t] if t in known else found[t] for t in texts])


@dataclass
class ReplyModel:
    """A reply suggester with the ``info`` / ``predict_batch`` interface nodes serve.

    Retrieval repliers also hold the `encoder` that embeds a batch's texts at once and the
    `config` that says which texts a request embeds.
    """

    suggester: ReplySuggester
    info: ModelInfo
    encoder: _PrecomputedEncoder | None = None
    config: ReplyConfig | None = None

    @classmethod
    def load(
        cls,
        args: RepliesArgs,
        wrap_encoder: Callable[[MiniLMEmbedder], TextEncoder] | None = None,
        encoder: TextEncoder | None = None,
    ) -> ReplyModel:
        """Build the configured replier (retrieval: loads MiniLM and embeds the bank).

        `wrap_encoder` (retrieval) puts MiniLM behind another encoder before anything is
        embedded: the node's `CachingEmbedder`. `encoder` (retrieval): embed with it instead
        of loading MiniLM here (the graph's one shared encoder); `wrap_encoder` is then unused.
        """
        if args.kind == "seq2seq":
            if args.path is None:
                raise ValueError('replies.kind="seq2seq" needs replies.path')
            seq2seq = Seq2SeqReplier.load(
                args.path,
                Seq2SeqConfig(max_message_chars=args.max_message_chars, device=args.device),
            )
            return cls(seq2seq, ModelInfo(seq2seq.name, "local", args.device, ()))
        embedder: TextEncoder
        if encoder is not None:
            embedder = encoder
        else:
            local = MiniLMEmbedder.load(args.path, args.device)
            embedder = wrap_encoder(local) if wrap_encoder else local
        bank = ReplyBank.load(args.bank_path)
        precomputed = _PrecomputedEncoder(embedder)
        config = ReplyConfig(
            max_message_chars=args.max_message_chars, min_similarity=args.min_similarity
        )
        replier = SmartReplier(bank, precomputed, config)
        info = ModelInfo(
            name=f"smart-reply/{embedder.info.name}",
            version=embedder.info.version,
            device=embedder.info.device,
            labels=tuple(i.name for i in bank.intents),
        )
        return cls(replier, info, precomputed, config)

    def _texts_of(self, request: ReplyQuery) -> list[str]:
        """The texts the replier will embed for `request` (message, recent context)."""
        if self.config is None:
            return []
        limit_chars = self.config.max_message_chars
        recent = [c for c in request.context if c.strip()]
        recent = recent[-self.config.max_context_messages :]
        message = request.message
        if len(message) > limit_chars:
            return []  # answered without embedding (message_too_long)
        return [message] + [c[:limit_chars] for c in recent]

    def predict_batch(self, requests: list[ReplyQuery]) -> list[ReplyDecision]:
        """One `ReplyDecision` per request, in input order."""
        encoder = self.encoder
        if encoder is not None:
            texts = list(dict.fromkeys(t for r in requests for t in self._texts_of(r)))
            vectors: Any = encoder.embedder.embed(texts) if texts else []
            encoder.set_batch(dict(zip(texts, vectors, strict=True)))
        try:
            return [
                self.suggester.suggest(
                    request.message,
                    list(request.context) or None,
                    request.limit,
                    request.flagged_by_moderation,
                )
                for request in requests
            ]
        finally:
            if encoder is not None:
                encoder.set_batch({})
