"""Small classifier heads over MiniLM sentence embeddings: moderation and 3-way sentiment.

A head is a two-layer MLP that reads the 384-dimensional, unit-length vectors of
`models.embeddings.MiniLMEmbedder`, optionally next to other input features (`HEAD_FEATURES`):

* ``embedding``: the MiniLM vector (384 values; old checkpoints read it alone);
* ``profanity``: alt-profanity-check's probability p as (p, logit(p) / 4) -- a "stacked"
  head. MiniLM vectors blur individual swear words, which that char/word n-gram model
  scores well; the head learns how far to trust it next to the embedding.

`head_inputs` builds the input matrix the same way at training and at serving time, in the
order the checkpoint's ``features`` lists.

Training happens in ``pipelines/text_heads.py``; this file holds only what serving and
training share: the architecture, its config (saved inside every checkpoint, so a
checkpoint says what it is), how labels are derived from the labelled data
sets, and the serving classes (`HeadClassifier`, one subclass per task):

* `HeadModerator` (multi-label, sigmoid per label) -> ``ModerationScores`` per text;
* `HeadSentiment` (softmax over positive/negative/neutral) -> ``SentimentScores`` per text.

Checkpoint layout (a directory)::

    head_config.json   HeadConfig (task, labels, input features, sizes, embedder identity)
    head.pt            the module's state_dict
    metrics.json       metrics recorded at training time (optional)
    VERSION            a readable version id, e.g. "heads-moderation/3" (optional)

Labels (documented in docs/models.md):

* Moderation (Davidson et al.): ``offensive`` means "offensive language or worse", so a hate
  speech tweet (class 0) is positive for BOTH ``hate_speech`` and ``offensive``; class 1
  (offensive) is positive for ``offensive`` only; class 2 (neither) for none. The moderation
  policy acts on the highest category score, so hate speech can never score lower than mere
  profanity, and ``hate_speech`` alone tells the two apart. Soft targets use the annotators'
  vote fractions: hate = hate votes / count, offensive = (hate + offensive votes) / count.
* Sentiment (VADER ground truth, mean rating on -4..4): positive when the mean is above
  ``SENTIMENT_POSITIVE_MIN_RATING`` (0.5), negative below ``SENTIMENT_NEGATIVE_MAX_RATING``
  (-0.5), neutral otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

import numpy as np
import torch
from torch import nn

from models.answers import ModelInfo
from models.device import resolve_device
from models.embeddings import EMBEDDING_DIM, MiniLMEmbedder
from models.moderation import ModerationScores, ProfanityModerator, moderation_scores
from models.sentiment import SentimentScores, sentiment_scores
from models.text_vectors import TextEncoder
from models.text_windows import check_texts

__all__ = [
    "HEAD_CONFIG_FILENAME",
    "HEAD_FEATURES",
    "HEAD_WEIGHTS_FILENAME",
    "MODERATION_HEAD_LABELS",
    "SENTIMENT_HEAD_LABELS",
    "HeadClassifier",
    "HeadConfig",
    "HeadModerator",
    "HeadSentiment",
    "LoadedHead",
    "TextHead",
    "davidson_targets",
    "feature_dim",
    "head_inputs",
    "head_version",
    "load_head",
    "save_head",
    "sentiment_class",
    "shared_embedder",
    "shared_profanity",
]

HeadTask = Literal["moderation", "sentiment"]
ResultT = TypeVar("ResultT")

# Input features a head may read, and how many values each adds (see the module docstring).
HEAD_FEATURES: dict[str, int] = {"embedding": EMBEDDING_DIM, "profanity": 2}
# Old checkpoints have no "features" key: they read the embedding alone.
DEFAULT_HEAD_FEATURES: tuple[str, ...] = ("embedding",)
# p is clipped before the logit so a certain 0/1 maps to +-9.2, not +-inf; / 4 brings that
# near the scale of the other inputs (AdamW's steps are per weight, but GELU's bend is not).
_PROFANITY_EPS = 1e-4
_PROFANITY_LOGIT_SCALE = 4.0

HEAD_CONFIG_FILENAME = "head_config.json"
HEAD_WEIGHTS_FILENAME = "head.pt"
HEAD_METRICS_FILENAME = "metrics.json"
HEAD_VERSION_FILENAME = "VERSION"

MODERATION_HEAD_LABELS = ("hate_speech", "offensive")
# Order matters: it is the output order of the sentiment head's logits.
SENTIMENT_HEAD_LABELS = ("positive", "negative", "neutral")

# Cut-offs on the VADER ground truth mean rating (-4..4). +-0.5 keeps texts the raters
# barely leaned on (|mean| <= 0.5 is about one rater in eight moving one step) as neutral.
SENTIMENT_POSITIVE_MIN_RATING = 0.5
SENTIMENT_NEGATIVE_MAX_RATING = -0.5

# Davidson et al. classes (column `class` of the CSV).
DAVIDSON_HATE, DAVIDSON_OFFENSIVE, DAVIDSON_NEITHER = 0, 1, 2

_VERSION_HEX_CHARS = 12


@dataclass(frozen=True)
class HeadConfig:
    """Everything needed to rebuild a head; stored as ``head_config.json`` in the checkpoint.

    Attributes:
        task: ``"moderation"`` (multi-label, sigmoid) or ``"sentiment"`` (softmax).
        labels: Output names in logit order.
        input_dim: Input size the head reads: `feature_dim(features)` (MiniLM alone: 384).
        hidden_dim: Width of the hidden layer.
        dropout: Dropout before the output layer (training only).
        embedder: Name of the embedder the head was trained on; serving must use the same.
        embedder_version: That embedder's checkpoint version.
        name: Model name reported in /health when the checkpoint has no registry name.
        features: Input features in input order (`HEAD_FEATURES`); default the embedding.
    """

    task: HeadTask
    labels: tuple[str, ...]
    input_dim: int = EMBEDDING_DIM
    hidden_dim: int = 256
    dropout: float = 0.1
    embedder: str = "all-MiniLM-L6-v2"
    embedder_version: str = ""
    name: str = ""
    features: tuple[str, ...] = DEFAULT_HEAD_FEATURES

    def __post_init__(self) -> None:
        expected = feature_dim(self.features)
        if self.input_dim != expected:
            raise ValueError(
                f"input_dim={self.input_dim} but features {list(self.features)} give "
                f"{expected} values; set input_dim=feature_dim(features)"
            )

    @property
    def multi_label(self) -> bool:
        """Moderation heads score each label independently (sigmoid)."""
        return self.task == "moderation"

    def to_json(self) -> str:
        """JSON text of the config (labels as a list)."""
        return json.dumps(
            {**asdict(self), "labels": list(self.labels), "features": list(self.features)},
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, source: str) -> HeadConfig:
        """Parse ``head_config.json``; `source` names the file in errors."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source} is not valid JSON ({exc.msg}); re-export the head") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"{source} must hold a JSON object, got {type(raw).__name__}")
        task = raw.get("task")
        if task not in ("moderation", "sentiment"):
            raise ValueError(
                f"{source}: task={task!r}; a head checkpoint has task moderation or sentiment"
            )
        labels = raw.get("labels")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(label, str) for label in labels)
        ):
            raise ValueError(f"{source}: labels={labels!r}; expected a non-empty list of names")
        if task == "sentiment" and set(labels) != set(SENTIMENT_HEAD_LABELS):
            raise ValueError(
                f"{source}: sentiment labels {labels!r} must be exactly "
                f"{list(SENTIMENT_HEAD_LABELS)} (in any order)"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{source}: unknown keys {unknown}; accepted: {sorted(known)}")
        raw["labels"] = tuple(labels)
        features = raw.get("features", list(DEFAULT_HEAD_FEATURES))
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise ValueError(f"{source}: features={features!r}; expected a list of names")
        raw["features"] = tuple(features)
        try:
            return cls(**raw)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}; re-export the head") from exc


def feature_dim(features: Sequence[str]) -> int:
    """Number of input values `features` give a head.

    Raises:
        ValueError: `features` is empty, repeats a name or names an unknown feature.
    """
    if not features:
        raise ValueError(f"features is empty; pick from {sorted(HEAD_FEATURES)}")
    unknown = [name for name in features if name not in HEAD_FEATURES]
    if unknown:
        raise ValueError(f"unknown head features {unknown}; accepted: {sorted(HEAD_FEATURES)}")
    if len(set(features)) != len(features):
        raise ValueError(f"features {list(features)} repeat a name; list each once")
    return sum(HEAD_FEATURES[name] for name in features)


@lru_cache(maxsize=1)
def shared_profanity() -> ProfanityModerator:
    """One alt-profanity-check model per process (its import unpickles the model, ~1 s)."""
    return ProfanityModerator.load()


def _profanity_features(texts: Sequence[str], profanity: ProfanityModerator) -> np.ndarray:
    p = np.array(
        [row[ProfanityModerator.LABEL] for row in profanity.predict_batch(list(texts))],
        dtype=np.float64,
    ).reshape(len(texts))
    clipped = np.clip(p, _PROFANITY_EPS, 1.0 - _PROFANITY_EPS)
    logit = np.log(clipped / (1.0 - clipped)) / _PROFANITY_LOGIT_SCALE
    return np.stack([p, logit], axis=1).astype(np.float32)


def head_inputs(
    features: Sequence[str],
    texts: Sequence[str],
    embeddings: np.ndarray,
    profanity: ProfanityModerator | None = None,
) -> np.ndarray:
    """The head's input matrix ``(n, feature_dim(features))`` for `texts` (float32).

    Training and serving both call this, so a head always sees its inputs built the same
    way. `embeddings` are the texts' MiniLM vectors (row i belongs to texts[i]); the
    embedding-only case returns them unchanged. `profanity` defaults to `shared_profanity`.

    Raises:
        ValueError: Unknown features, or `embeddings` rows do not match `texts`.
    """
    feature_dim(features)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.shape != (len(texts), EMBEDDING_DIM):
        raise ValueError(
            f"embeddings have shape {embeddings.shape}; expected ({len(texts)}, "
            f"{EMBEDDING_DIM}): one MiniLM vector per text"
        )
    if tuple(features) == ("embedding",):
        return embeddings
    parts: list[np.ndarray] = []
    for name in features:
        if name == "embedding":
            parts.append(embeddings)
        elif name == "profanity":
            parts.append(_profanity_features(texts, profanity or shared_profanity()))
    return np.concatenate(parts, axis=1)


class TextHead(nn.Module):
    """Linear -> GELU -> dropout -> linear over a sentence embedding; returns logits."""

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        self.net = nn.Sequential(
            nn.Linear(config.input_dim, config.hidden_dim),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, len(config.labels)),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, len(labels))`` for embeddings ``(n, input_dim)``."""
        logits: torch.Tensor = self.net(embeddings)
        return logits

    def probabilities(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Sigmoid per label (moderation) or softmax over labels (sentiment)."""
        logits = self.forward(embeddings).float()
        if self.config.multi_label:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=-1)


@dataclass(frozen=True)
class LoadedHead:
    """A head read back from a checkpoint directory."""

    module: TextHead
    config: HeadConfig
    metrics: dict[str, Any]
    version: str

    def probabilities(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """Per-label probabilities for `texts` given their MiniLM `embeddings` (numpy)."""
        inputs = head_inputs(self.config.features, texts, embeddings)
        device = next(self.module.parameters()).device
        with torch.inference_mode():
            tensor = torch.from_numpy(inputs).to(device)
            result: np.ndarray = self.module.probabilities(tensor).cpu().numpy()
        return result


def head_version(directory: Path) -> str:
    """``VERSION`` when present, else a short SHA-256 of weights + config."""
    pinned = directory / HEAD_VERSION_FILENAME
    if pinned.is_file() and pinned.read_text(encoding="utf-8").strip():
        return pinned.read_text(encoding="utf-8").strip()
    digest = hashlib.sha256()
    for name in (HEAD_WEIGHTS_FILENAME, HEAD_CONFIG_FILENAME):
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()[:_VERSION_HEX_CHARS]


def save_head(
    directory: str | os.PathLike[str],
    module: TextHead,
    metrics: dict[str, Any] | None = None,
    version: str | None = None,
) -> Path:
    """Write a head checkpoint (config, weights, metrics, optional VERSION) to `directory`."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    # Weights are moved to CPU first so a GPU-trained head loads on a CPU-only replica.
    state = {key: value.detach().cpu() for key, value in module.state_dict().items()}
    torch.save(state, target / HEAD_WEIGHTS_FILENAME)
    (target / HEAD_CONFIG_FILENAME).write_text(module.config.to_json(), encoding="utf-8")
    (target / HEAD_METRICS_FILENAME).write_text(
        json.dumps(metrics or {}, indent=2, sort_keys=True), encoding="utf-8"
    )
    if version:
        (target / HEAD_VERSION_FILENAME).write_text(version + "\n", encoding="utf-8")
    return target


def load_head(directory: str | os.PathLike[str], device: str = "cpu") -> LoadedHead:
    """Read a head checkpoint written by `save_head`.

    Raises:
        FileNotFoundError: `directory` is missing or lacks head_config.json / head.pt.
        ValueError: The config is malformed or does not match the weights.
    """
    source = Path(directory)
    for name in (HEAD_CONFIG_FILENAME, HEAD_WEIGHTS_FILENAME):
        if not (source / name).is_file():
            raise FileNotFoundError(
                f"head checkpoint {str(source)!r} has no {name}; point it at a directory "
                "written by models.heads.save_head (head_config.json + head.pt)"
            )
    config_path = source / HEAD_CONFIG_FILENAME
    config = HeadConfig.from_json(config_path.read_text(encoding="utf-8"), str(config_path))
    module = TextHead(config)
    # weights_only: a checkpoint is data, never code to unpickle.
    state = torch.load(source / HEAD_WEIGHTS_FILENAME, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"head weights in {str(source)!r} do not match its head_config.json ({exc}); "
            "re-export the checkpoint"
        ) from exc
    module.eval().to(resolve_device(device))
    metrics_path = source / HEAD_METRICS_FILENAME
    metrics: dict[str, Any] = (
        json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    )
    return LoadedHead(module, config, metrics, head_version(source))


def davidson_targets(
    classes: np.ndarray,
    hate_votes: np.ndarray | None = None,
    offensive_votes: np.ndarray | None = None,
    vote_counts: np.ndarray | None = None,
) -> np.ndarray:
    """Moderation targets ``(n, 2)`` = (hate_speech, offensive) from Davidson rows.

    With vote columns the targets are soft (vote fractions, see the module docstring);
    without them they are hard 0/1 from ``class``.
    """
    classes = np.asarray(classes)
    if hate_votes is not None and offensive_votes is not None and vote_counts is not None:
        counts = np.maximum(np.asarray(vote_counts, dtype=np.float32), 1.0)
        hate = np.asarray(hate_votes, dtype=np.float32) / counts
        offensive = (hate_votes + np.asarray(offensive_votes, dtype=np.float32)) / counts
        return np.clip(np.stack([hate, offensive], axis=1), 0.0, 1.0).astype(np.float32)
    hate = (classes == DAVIDSON_HATE).astype(np.float32)
    offensive = (classes != DAVIDSON_NEITHER).astype(np.float32)
    return np.stack([hate, offensive], axis=1)


def sentiment_class(mean_ratings: np.ndarray) -> np.ndarray:
    """Index into `SENTIMENT_HEAD_LABELS` for each mean rating (cut-offs +-0.5)."""
    ratings = np.asarray(mean_ratings, dtype=np.float32)
    classes = np.full(ratings.shape, SENTIMENT_HEAD_LABELS.index("neutral"), dtype=np.int64)
    classes[ratings > SENTIMENT_POSITIVE_MIN_RATING] = SENTIMENT_HEAD_LABELS.index("positive")
    classes[ratings < SENTIMENT_NEGATIVE_MAX_RATING] = SENTIMENT_HEAD_LABELS.index("negative")
    return classes


@lru_cache(maxsize=4)
def shared_embedder(device: str = "auto") -> MiniLMEmbedder:
    """One MiniLM embedder per process and device: swapping heads must not reload it."""
    return MiniLMEmbedder.load(device=device)


class HeadClassifier(Generic[ResultT]):
    """Shared serving logic: embed (preprocess), run the head (_forward), label (postprocess).

    A task's subclass names its `task` and turns probabilities into its result type.
    """

    task: ClassVar[HeadTask]

    def __init__(
        self,
        loaded: LoadedHead,
        embedder: TextEncoder,
        name: str | None = None,
        version: str | None = None,
        embed_batch_size: int = 64,
    ) -> None:
        self.head = loaded.module
        self.config = loaded.config
        self.embedder = embedder
        self.embed_batch_size = embed_batch_size
        self._device = next(self.head.parameters()).device
        # Loaded now, not on the first request: a missing package fails the replica's start.
        self._profanity = shared_profanity() if "profanity" in self.config.features else None
        self.info = ModelInfo(
            name=name or loaded.config.name or f"head-{loaded.config.task}",
            version=version or loaded.version,
            device=str(self._device),
            labels=loaded.config.labels,
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        device: str = "auto",
        name: str | None = None,
        version: str | None = None,
        embedder: TextEncoder | None = None,
    ) -> Self:
        """Load a head checkpoint and the (process-shared) MiniLM embedder.

        `embedder` replaces that embedder, e.g. a `models.text_vectors.CachingEmbedder` over
        it, so a text another feature already embedded is not encoded again.

        Raises:
            FileNotFoundError, ValueError: As `load_head`, or the checkpoint is a head of
                another task.
        """
        loaded = load_head(path, device)
        if loaded.config.task != cls.task:
            raise ValueError(
                f"head checkpoint {str(path)!r} is a {loaded.config.task} head; this node "
                f"needs a {cls.task} head (head_config.json task={cls.task!r})"
            )
        return cls(loaded, embedder or shared_embedder(device), name, version)

    def preprocess(self, texts: list[str]) -> torch.Tensor:
        """The head's inputs for `texts`: MiniLM vectors (in batches of `embed_batch_size`)
        plus the checkpoint's other features (`head_inputs`)."""
        parts = [
            self.embedder.embed(texts[start : start + self.embed_batch_size])
            for start in range(0, len(texts), self.embed_batch_size)
        ]
        inputs = head_inputs(self.config.features, texts, np.concatenate(parts), self._profanity)
        return torch.from_numpy(inputs).to(self._device)

    def _forward(self, embeddings: torch.Tensor) -> list[list[float]]:
        with torch.inference_mode():
            probabilities: list[list[float]] = self.head.probabilities(embeddings).cpu().tolist()
        return probabilities

    def probabilities(self, texts: list[str]) -> list[list[float]]:
        """Per-label probabilities in `info.labels` order (no post-processing)."""
        checked = check_texts(texts)
        if not checked:
            return []
        return self._forward(self.preprocess(checked))

    def postprocess(self, rows: list[list[float]]) -> list[ResultT]:
        """One result per row of probabilities (the task's subclass decides)."""
        raise NotImplementedError

    def predict_batch(self, texts: list[str]) -> list[ResultT]:
        """One result per text, in input order."""
        return self.postprocess(self.probabilities(texts))


class HeadModerator(HeadClassifier[ModerationScores]):
    """Moderation head: ``{label: sigmoid probability}`` per text."""

    task = "moderation"

    def postprocess(self, rows: list[list[float]]) -> list[ModerationScores]:
        """``{label: probability}`` per row."""
        return moderation_scores(self.info.labels, rows)


class HeadSentiment(HeadClassifier[SentimentScores]):
    """3-way sentiment head: softmax scores; the label is the top one, confidence its
    probability."""

    task = "sentiment"

    def postprocess(self, rows: list[list[float]]) -> list[SentimentScores]:
        """Label each row of softmax scores."""
        return sentiment_scores(self.info.labels, rows)
