"""Content moderation models: a probability per category for each text.

Every model returns one `ModerationScores` (``{category: probability in [0, 1]}``) per text:

* `ProfanityModerator` — the embedded default (alt-profanity-check, a linear SVM on TF-IDF;
  CPU, no checkpoint needed), one category ``"offensive"``.
* `TransformerModerator` — a multi-label sequence classifier in the unitary/toxic-bert style
  loaded from a local checkpoint directory; categories come from the checkpoint itself.

`models.heads.HeadModerator` is the third kind; `models.text_classifier` loads any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import metadata

import torch

from models.answers import ModelInfo
from models.text_windows import TextWindows, WindowedSequenceClassifier, check_texts

__all__ = [
    "ModerationScores",
    "ProfanityModerator",
    "TransformerModerator",
    "moderation_scores",
]

# One probability per category, independent of the others (multi-label).
ModerationScores = dict[str, float]


def moderation_scores(
    labels: Sequence[str], rows: Sequence[Sequence[float]]
) -> list[ModerationScores]:
    """``{label: probability}`` for each row of per-label probabilities."""
    return [dict(zip(labels, row, strict=True)) for row in rows]


class ProfanityModerator:
    """Embedded default moderator wrapping alt-profanity-check (category ``"offensive"``)."""

    LABEL = "offensive"

    def __init__(self, predict_prob: Callable[[list[str]], Sequence[float]], version: str) -> None:
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

    def predict_batch(self, texts: list[str]) -> list[ModerationScores]:
        """Return ``[{"offensive": p}, ...]`` in input order; ``[]`` for no texts."""
        checked = check_texts(texts)
        if not checked:
            # scikit-learn rejects an empty batch, so it never reaches the model.
            return []
        probabilities = self._predict_prob(checked)
        return [{self.LABEL: float(p)} for p in probabilities]


class TransformerModerator(WindowedSequenceClassifier[ModerationScores]):
    """Multi-label toxicity classifier (unitary/toxic-bert style) from a local checkpoint.

    Each label gets an independent sigmoid probability. Texts longer than `max_length`
    tokens are split into overlapping windows and every label takes the maximum over the
    text's windows: a post is as offensive as its most offensive part, wherever it is.
    The forward pass is torch, or a gated onnxruntime artifact (``backend="onnx"``); load
    one with `WindowedSequenceClassifier.load`.
    """

    activation = "sigmoid"
    reduction = "amax"
    checkpoint_example = "a unitary/toxic-bert download"

    def postprocess(
        self, windows: TextWindows, window_logits: torch.Tensor
    ) -> list[ModerationScores]:
        """Sigmoid each window's logits, take the per-label max over each text's windows."""
        per_text = self.text_probabilities(windows, window_logits)
        return moderation_scores(self.info.labels, per_text.tolist())
