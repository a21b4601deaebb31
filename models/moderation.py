"""Content moderation models: per-category probabilities for each input text.

Two implementations share one interface (`ModerationModel`):

* `ProfanityModerator` — the embedded default (alt-profanity-check, a linear SVM on TF-IDF;
  CPU, no checkpoint needed), one category ``"offensive"``.
* `TransformerModerator` — a multi-label sequence classifier in the unitary/toxic-bert style
  loaded from a local checkpoint directory; categories come from the checkpoint itself.
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any, Protocol

import torch

from models.answers import ModelInfo
from models.text_windows import (
    TextWindows,
    WindowedSequenceClassifier,
    check_texts,
    load_classifier,
)

__all__ = [
    "ModelInfo",
    "ModerationModel",
    "ProfanityModerator",
    "TransformerModerator",
    "load_moderator",
    "MODERATOR_KINDS",
]

MODERATOR_KINDS = ("profanity", "transformer", "head")


class ModerationModel(Protocol):
    """What the serving layer needs from a moderation model."""

    info: ModelInfo

    def predict_batch(self, texts: list[str]) -> list[dict[str, float]]:
        """Return one ``{category: probability in [0, 1]}`` dict per text, in input order."""
        ...


class ProfanityModerator:
    """Embedded default moderator wrapping alt-profanity-check (category ``"offensive"``)."""

    LABEL = "offensive"

    def __init__(self, predict_prob: Any, version: str) -> None:
        """Wrap alt-profanity-check's `predict_prob`; use `load` instead of calling this."""
        self._predict_prob = predict_prob
        self.info = ModelInfo(
            name="alt-profanity-check",
            version=version,
            device="cpu",
            labels=(self.LABEL,),
        )

    @classmethod
    def load(cls) -> ProfanityModerator:
        """Import alt-profanity-check (which unpickles its model, ~1 s) and wrap it."""
        # Imported here, not at module top, so importing this module stays cheap for
        # processes that only use the transformer moderator.
        from profanity_check import predict_prob

        return cls(predict_prob, metadata.version("alt-profanity-check"))

    def predict_batch(self, texts: list[str]) -> list[dict[str, float]]:
        """Return ``[{"offensive": p}, ...]`` in input order; ``[]`` for no texts."""
        checked = check_texts(texts)
        if not checked:
            # scikit-learn rejects an empty batch, so it never reaches the model.
            return []
        probabilities = self._predict_prob(checked)
        return [{self.LABEL: float(p)} for p in probabilities]


class TransformerModerator(WindowedSequenceClassifier):
    """Multi-label toxicity classifier (unitary/toxic-bert style) from a local checkpoint.

    Each label gets an independent sigmoid probability. Texts longer than `max_length`
    tokens are split into overlapping windows and every label takes the maximum over the
    text's windows: a post is as offensive as its most offensive part, wherever it is.
    The forward pass is torch, or a gated onnxruntime artifact (``backend="onnx"``).
    """

    activation = "sigmoid"
    reduction = "amax"

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None,
        device: str = "auto",
        max_length: int | None = None,
        stride: int = 64,
        max_windows_per_forward: int = 64,
        name: str | None = None,
        backend: str = "torch",
        onnx_path: str | os.PathLike[str] | None = None,
        onnx_threads: int = 0,
    ) -> TransformerModerator:
        """Load tokenizer and model from a LOCAL directory (nothing is downloaded).

        Args:
            path: Directory written by ``save_pretrained`` (config.json, tokenizer, weights);
                not read with ``backend="onnx"``.
            device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see `resolve_device`);
                ``backend="onnx"`` runs on CPU only.
            max_length: Window length in tokens; default min(tokenizer limit,
                max_position_embeddings, 512).
            stride: Tokens shared by consecutive windows of one long text.
            max_windows_per_forward: Most windows sent through the model in one call.
            name: Reported model name; default the directory's basename (onnx: the exported
                checkpoint's name, plus ``-onnx-int8`` / ``-onnx-fp32``).
            backend: ``"torch"`` or ``"onnx"`` (the gated artifact at `onnx_path`).
            onnx_path: Directory written by ``python -m pipelines.export_onnx --model
                classifier``.
            onnx_threads: onnxruntime intra-op threads per call; 0 = one per core.

        Raises:
            FileNotFoundError: `path` is missing, not a directory, or lacks config.json.
            ValueError: Invalid device, max_length, stride, max_windows_per_forward or backend.
            models.onnx_backend.ArtifactNotServableError: The artifact has no passing gate.
        """
        loaded = load_classifier(
            path,
            device,
            max_length,
            stride,
            max_windows_per_forward,
            name,
            backend=backend,
            onnx_path=onnx_path,
            onnx_threads=onnx_threads,
        )
        return cls(loaded, stride, max_windows_per_forward, tuple(loaded.id2label))

    def postprocess(
        self, windows: TextWindows, window_logits: torch.Tensor
    ) -> list[dict[str, float]]:
        """Sigmoid each window's logits, take the per-label max over each text's windows."""
        per_text = self.text_probabilities(windows, window_logits)
        labels = self.info.labels
        return [dict(zip(labels, row, strict=True)) for row in per_text.tolist()]

    def predict_batch(self, texts: list[str]) -> list[dict[str, float]]:
        """Return one ``{label: probability}`` dict per text, in input order."""
        checked = check_texts(texts)
        if not checked:
            return []
        windows = self.preprocess(checked)
        return self.postprocess(windows, self.window_logits(windows))


def load_moderator(
    kind: str,
    path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    **kwargs: Any,
) -> ModerationModel:
    """Build the configured moderation model.

    Args:
        kind: ``"profanity"`` (embedded default), ``"transformer"`` or ``"head"`` (MiniLM head).
        path: Local checkpoint directory; required for ``"transformer"``.
        device: Device for the transformer model; alt-profanity-check always runs on CPU.
        **kwargs: Extra `TransformerModerator.load` options (max_length, stride,
            max_windows_per_forward, name, backend, onnx_path, onnx_threads). The
            profanity model has no such options, so `path`, `device` and these are ignored
            for it; this lets one config shape serve both kinds.

    Raises:
        ValueError: Unknown `kind`, or ``"transformer"`` without `path` (backend torch).
    """
    normalised = kind.strip().lower()
    if normalised == "profanity":
        return ProfanityModerator.load()
    if normalised == "transformer":
        if kwargs.get("backend", "torch") == "torch" and (path is None or not str(path)):
            raise ValueError(
                'moderation kind "transformer" needs a checkpoint: set the path to a local '
                "directory written by save_pretrained (e.g. a unitary/toxic-bert download)"
            )
        return TransformerModerator.load(path, device, **kwargs)
    if normalised == "head":
        if path is None or not str(path):
            raise ValueError(
                'moderation kind "head" needs a checkpoint: set the path to a directory written '
                "by models.heads.save_head (pipelines/text_heads.py writes one)"
            )
        # Imported here: the head pulls in the MiniLM embedder, which other kinds never need.
        from models.heads import HeadModerator

        head: ModerationModel = HeadModerator.load(path, device, **kwargs)
        return head
    raise ValueError(
        f"unknown moderation model kind {kind!r}; accepted kinds: {', '.join(MODERATOR_KINDS)}"
    )
