"""Overlapping-window inference for Hugging Face sequence classifiers.

Encoder classifiers see at most `max_length` tokens. Truncating a long post would silently
drop whatever comes after the cut (an insult at the end of a long post would never be seen),
so each text is split into overlapping windows, every window is classified, and the
per-window outputs are reduced back to one row per text (max for moderation, mean for
sentiment). Moderation and sentiment share this module so the two cannot drift apart.

The forward pass runs either the torch checkpoint or, with ``backend="onnx"``, a gated
onnxruntime artifact (`models.onnx_backend.OnnxClassifier`); everything around it (windows,
chunks, padding, label order, activation, reduction) is this module's, whichever runs.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar, cast

import numpy as np
import torch
from numpy.typing import NDArray

if TYPE_CHECKING:
    # Imported where a checkpoint is loaded: transformers costs ~5 s of start-up, and the
    # embedded defaults (alt-profanity-check, VADER) share this module without needing it.
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from models.answers import ModelInfo
from models.device import checkpoint_version, require_checkpoint_dir, resolve_device
from models.onnx_backend import OnnxClassifier

# BERT-family checkpoints are trained on at most 512 positions; a larger default would only
# cost memory (attention is quadratic) for checkpoints that report more.
DEFAULT_MAX_LENGTH_CAP = 512
# Tokenizers saved without a length report `model_max_length` as a huge sentinel
# (int(1e30)); anything above this bound is treated as "not set".
_MODEL_MAX_LENGTH_UNSET_ABOVE = 1_000_000

Reduction = Literal["amax", "mean"]
Activation = Literal["sigmoid", "softmax"]
BACKENDS = ("torch", "onnx")

ResultT = TypeVar("ResultT")


class LogitsRuntime(Protocol):
    """A forward pass other than torch's (`models.onnx_backend.OnnxClassifier`)."""

    def logits(self, features: Mapping[str, Any]) -> NDArray[np.float32]:
        """Logits ``[batch, labels]`` for one padded token batch (model input name -> ids)."""
        ...


@dataclass(frozen=True)
class TextWindows:
    """Token windows for a batch of texts, ready for chunked model calls.

    Attributes:
        features: Model input name (``input_ids``, ``attention_mask``, ...) -> one unpadded
            token list per window.
        sample_index: For each window, the index of the text it came from. Windows of one
            text are contiguous and in text order.
        num_texts: Number of texts that were encoded (every text has at least one window).
    """

    features: dict[str, list[list[int]]]
    sample_index: list[int]
    num_texts: int

    def __len__(self) -> int:
        """Number of windows across all texts."""
        return len(self.sample_index)

    def windows_per_text(self) -> list[int]:
        """Return how many windows each text was split into, in text order."""
        counts = [0] * self.num_texts
        for text_index in self.sample_index:
            counts[text_index] += 1
        return counts


def check_texts(texts: Sequence[object]) -> list[str]:
    """Return `texts` as a list of str, or raise naming the first non-string item.

    Raises:
        TypeError: An item is not a str (tokenizers fail on such input with an unhelpful
            message, or silently treat a list as pre-tokenised words).
    """
    checked: list[str] = []
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"texts[{position}] is {type(text).__name__} ({text!r:.60}); every item must "
                "be a str — convert or drop it before calling predict_batch"
            )
        checked.append(text)
    return checked


def resolve_max_length(
    tokenizer: PreTrainedTokenizerBase,
    config: PretrainedConfig,
    requested: int | None,
) -> int:
    """Pick the window length in tokens (special tokens included).

    Default: ``min(tokenizer.model_max_length, config.max_position_embeddings, 512)``,
    ignoring the huge sentinel a tokenizer reports when no length was saved.

    Raises:
        ValueError: `requested` is not positive or exceeds the model's position embeddings
            (which would fail inside the model with an index error).
    """
    limits = [DEFAULT_MAX_LENGTH_CAP]
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit <= _MODEL_MAX_LENGTH_UNSET_ABOVE:
        limits.append(tokenizer_limit)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    default = min(limits)
    if requested is None:
        return default
    if requested <= 0:
        raise ValueError(
            f"max_length={requested} must be a positive number of tokens; leave it unset to "
            f"use the checkpoint's limit ({default})"
        )
    if isinstance(positions, int) and positions > 0 and requested > positions:
        raise ValueError(
            f"max_length={requested} exceeds the model's max_position_embeddings={positions}; "
            f"use at most {positions} or leave it unset (default {default})"
        )
    return requested


def check_stride(tokenizer: PreTrainedTokenizerBase, max_length: int, stride: int) -> None:
    """Validate the window overlap against the window length.

    The fast tokenizer panics (a Rust panic, not a Python exception) when the overlap is not
    strictly smaller than the content part of a window, so this must be checked up front.

    Raises:
        ValueError: `stride` is negative or not smaller than the window content length.
    """
    content_length = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if content_length <= 0:
        raise ValueError(
            f"max_length={max_length} leaves no room for text after the special tokens; "
            "use a larger max_length"
        )
    if stride < 0 or stride >= content_length:
        raise ValueError(
            f"stride={stride} must be >= 0 and smaller than the window's text length "
            f"({content_length} tokens for max_length={max_length}); use e.g. "
            f"stride={content_length // 4}"
        )


def encode_windows(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_length: int,
    stride: int,
) -> TextWindows:
    """Tokenise `texts` into overlapping windows of at most `max_length` tokens.

    Consecutive windows of one text share `stride` tokens so that a phrase cut by one window
    boundary appears whole in the neighbouring window.
    """
    encoding = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        padding=False,
    )
    names = [name for name in tokenizer.model_input_names if name in encoding]
    features = {name: cast(list[list[int]], encoding[name]) for name in names}
    sample_index = [int(i) for i in encoding["overflow_to_sample_mapping"]]
    return TextWindows(features=features, sample_index=sample_index, num_texts=len(texts))


def pad_windows(
    windows: TextWindows,
    positions: Sequence[int],
    pad_values: dict[str, int],
    padding_side: str,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Pad the selected windows to their longest member and stack them as tensors.

    Padding per chunk (not to `max_length`) keeps a chunk of short comments cheap.
    """
    longest = max(len(windows.features["input_ids"][i]) for i in positions)
    batch: dict[str, torch.Tensor] = {}
    for name, rows in windows.features.items():
        pad_value = pad_values.get(name, 0)
        padded = []
        for i in positions:
            filler = [pad_value] * (longest - len(rows[i]))
            padded.append(filler + rows[i] if padding_side == "left" else rows[i] + filler)
        batch[name] = torch.tensor(padded, dtype=torch.long, device=device)
    return batch


def reduce_over_windows(
    values: torch.Tensor, sample_index: Sequence[int], num_texts: int, reduction: Reduction
) -> torch.Tensor:
    """Reduce per-window rows ``[windows, labels]`` to per-text rows ``[texts, labels]``.

    Args:
        values: One row per window.
        sample_index: Text index of each window.
        num_texts: Number of texts; every text must own at least one window.
        reduction: ``"amax"`` (element-wise maximum) or ``"mean"``.
    """
    index = torch.tensor(list(sample_index), dtype=torch.long, device=values.device)
    index = index.unsqueeze(1).expand(-1, values.shape[1])
    out = torch.zeros((num_texts, values.shape[1]), dtype=values.dtype, device=values.device)
    # include_self=False: the zeros are only a placeholder, not a value to reduce with.
    return out.scatter_reduce(0, index, values, reduce=reduction, include_self=False)


@dataclass(frozen=True)
class LoadedClassifier:
    """Tokenizer, model and settings loaded from a local checkpoint directory.

    Exactly one of `model` (torch) and `runtime` (an ONNX artifact) runs the forward pass.
    """

    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel | None
    device: torch.device
    max_length: int
    version: str
    name: str
    id2label: list[str]
    runtime: LogitsRuntime | None = None


def load_classifier(
    path: str | os.PathLike[str] | None,
    device: str,
    max_length: int | None,
    stride: int,
    max_windows_per_forward: int,
    name: str | None,
    backend: str = "torch",
    onnx_path: str | os.PathLike[str] | None = None,
    onnx_threads: int = 0,
) -> LoadedClassifier:
    """Load a sequence classifier and its fast tokenizer from a LOCAL directory.

    Nothing is downloaded: both loaders get ``local_files_only=True``. With
    ``backend="onnx"`` the forward pass is the gated artifact at `onnx_path` (written by
    ``python -m pipelines.export_onnx --model classifier``), on CPU, and tokenizer and
    labels come from that directory; `path` is not read.

    Raises:
        FileNotFoundError: `path` (or `onnx_path`) is not a checkpoint directory with
            config.json / model.onnx.
        ValueError: Bad device / max_length / stride / max_windows_per_forward / backend, a
            slow (non-Rust) tokenizer, a tokenizer without pad token, or a config whose
            ``id2label`` does not cover every output.
        models.onnx_backend.ArtifactNotServableError: The artifact has no passing gate.
    """
    if max_windows_per_forward < 1:
        raise ValueError(
            f"max_windows_per_forward={max_windows_per_forward} must be >= 1; it caps how many "
            "windows go through the model in one call (e.g. 64)"
        )
    if backend == "onnx":
        return _load_onnx_classifier(device, max_length, stride, name, onnx_path, onnx_threads)
    if backend != "torch":
        raise ValueError(f"backend {backend!r} is not supported; use one of {', '.join(BACKENDS)}")
    if path is None:
        raise ValueError("backend 'torch' needs the checkpoint directory `path`")
    directory = require_checkpoint_dir(path)
    from transformers import AutoModelForSequenceClassification

    torch_device = resolve_device(device)
    tokenizer = _load_fast_tokenizer(directory)
    model = cast(
        "PreTrainedModel",
        AutoModelForSequenceClassification.from_pretrained(str(directory), local_files_only=True),
    )
    # Typed through nn.Module: transformers' own annotations for to()/eval() confuse mypy.
    module: torch.nn.Module = model
    module.to(torch_device)
    module.eval()
    resolved_length = resolve_max_length(tokenizer, model.config, max_length)
    check_stride(tokenizer, resolved_length, stride)
    labels = _ordered_labels(model.config, directory)
    return LoadedClassifier(
        tokenizer=tokenizer,
        model=model,
        device=torch_device,
        max_length=resolved_length,
        version=checkpoint_version(directory),
        name=name or directory.resolve().name,
        id2label=labels,
    )


def _load_onnx_classifier(
    device: str,
    max_length: int | None,
    stride: int,
    name: str | None,
    onnx_path: str | os.PathLike[str] | None,
    onnx_threads: int,
) -> LoadedClassifier:
    """`load_classifier` for ``backend="onnx"``: the gate is checked before anything loads."""
    if onnx_path is None or not str(onnx_path):
        raise ValueError(
            "backend 'onnx' needs onnx_path, a directory written by `python -m "
            "pipelines.export_onnx --model classifier`"
        )
    from transformers import AutoConfig

    runtime = OnnxClassifier.load(onnx_path, onnx_threads, name, device)
    directory = require_checkpoint_dir(onnx_path)
    tokenizer = _load_fast_tokenizer(directory)
    config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
    resolved_length = resolve_max_length(tokenizer, config, max_length)
    check_stride(tokenizer, resolved_length, stride)
    labels = _ordered_labels(config, directory)
    if tuple(labels) != runtime.info.labels:
        raise ValueError(
            f"config.json in {str(directory)!r} names the outputs {labels}, but the artifact "
            f"was gated with {list(runtime.info.labels)}; export the artifact again instead "
            "of editing its config"
        )
    return LoadedClassifier(
        tokenizer=tokenizer,
        model=None,
        device=torch.device("cpu"),
        max_length=resolved_length,
        version=runtime.info.version,
        name=runtime.info.name,
        id2label=labels,
        runtime=runtime,
    )


def _load_fast_tokenizer(directory: os.PathLike[str]) -> PreTrainedTokenizerBase:
    """The directory's tokenizer; windowing needs a fast one with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = cast(
        "PreTrainedTokenizerBase",
        AutoTokenizer.from_pretrained(str(directory), local_files_only=True),
    )
    if not tokenizer.is_fast:
        raise ValueError(
            f"the tokenizer in {str(directory)!r} is a slow Python tokenizer "
            f"({type(tokenizer).__name__}); long-text windowing needs a fast tokenizer — "
            "save the checkpoint with a tokenizer.json"
        )
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"the tokenizer in {str(directory)!r} has no pad token; set tokenizer.pad_token "
            "and re-save the checkpoint so batched windows can be padded"
        )
    return tokenizer


def _ordered_labels(config: PretrainedConfig, directory: os.PathLike[str]) -> list[str]:
    """Return label names ordered by output index, taken from ``config.id2label``."""
    raw: dict[Any, Any] = dict(getattr(config, "id2label", None) or {})
    num_labels = len(raw) if config.num_labels is None else int(config.num_labels)
    mapping = {int(key): str(value) for key, value in raw.items()}
    if sorted(mapping) != list(range(num_labels)):
        raise ValueError(
            f"config.json in {str(directory)!r} has id2label keys {sorted(mapping)} but the "
            f"model has {num_labels} outputs; id2label must name every output 0..{num_labels - 1}"
        )
    labels = [mapping[i] for i in range(num_labels)]
    if len(set(labels)) != len(labels):
        raise ValueError(
            f"config.json in {str(directory)!r} has duplicate id2label names {labels}; every "
            "output needs a distinct name, or results for one would overwrite another"
        )
    return labels


class WindowedSequenceClassifier(Generic[ResultT]):
    """Shared engine: windowed preprocessing, chunked forward passes, one result per text.

    A task's subclass sets `activation` and `reduction` (how window logits become per-text
    probabilities, `text_probabilities`), maps the checkpoint's label names
    (`canonical_labels`) and turns probabilities into its result type (`postprocess`).
    """

    info: ModelInfo
    activation: ClassVar[Activation]
    reduction: ClassVar[Reduction]
    # A checkpoint of the right shape, named in errors when one is missing.
    checkpoint_example: ClassVar[str]

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
    ) -> Self:
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
            ValueError: Invalid device, max_length, stride, max_windows_per_forward, backend,
                or label names the task cannot read.
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
        labels = cls.canonical_labels(loaded.id2label, str(onnx_path or path))
        return cls(loaded, stride, max_windows_per_forward, labels)

    @classmethod
    def canonical_labels(cls, id2label: list[str], source: str) -> tuple[str, ...]:
        """The names results use for the checkpoint's labels (default: its own names)."""
        return tuple(id2label)

    def __init__(
        self,
        loaded: LoadedClassifier,
        stride: int,
        max_windows_per_forward: int,
        labels: tuple[str, ...],
    ) -> None:
        """Wrap an already loaded checkpoint; use `load` to build one."""
        self.tokenizer = loaded.tokenizer
        self.model = loaded.model
        self.runtime = loaded.runtime
        self.device = loaded.device
        self.max_length = loaded.max_length
        self.stride = stride
        self.max_windows_per_forward = max_windows_per_forward
        self.num_labels = len(loaded.id2label)
        # The checkpoint's own label names in output order (info.labels may be canonical).
        self.id2label = list(loaded.id2label)
        self.info = ModelInfo(
            name=loaded.name,
            version=loaded.version,
            device=str(loaded.device),
            labels=labels,
        )
        pad_token_id = loaded.tokenizer.pad_token_id
        self._pad_values = {
            "input_ids": int(pad_token_id) if pad_token_id is not None else 0,
            "attention_mask": 0,
            "token_type_ids": int(getattr(loaded.tokenizer, "pad_token_type_id", 0) or 0),
        }
        self._padding_side = str(loaded.tokenizer.padding_side)

    def preprocess(self, texts: list[str]) -> TextWindows:
        """Split `texts` into overlapping token windows (see `encode_windows`)."""
        return encode_windows(self.tokenizer, texts, self.max_length, self.stride)

    def iter_chunks(
        self, windows: TextWindows
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """Yield ``(window positions, padded tensors)`` chunks of at most
        `max_windows_per_forward` windows.

        Windows are grouped by length first so short comments are not padded up to the
        length of a long post's full windows sharing their chunk.
        """
        input_ids = windows.features["input_ids"]
        order = sorted(range(len(windows)), key=lambda i: len(input_ids[i]))
        for start in range(0, len(order), self.max_windows_per_forward):
            positions = order[start : start + self.max_windows_per_forward]
            batch = pad_windows(
                windows, positions, self._pad_values, self._padding_side, self.device
            )
            yield positions, batch

    def _forward(self, chunk: dict[str, torch.Tensor]) -> torch.Tensor:
        """Run the model on one padded chunk already on `self.device`; return its logits."""
        if self.runtime is not None:
            features = {name: tensor.numpy() for name, tensor in chunk.items()}
            return torch.from_numpy(self.runtime.logits(features))
        if self.model is None:
            raise RuntimeError("this classifier has neither a torch model nor a runtime")
        with torch.inference_mode():
            output = self.model(**chunk)
        return cast(torch.Tensor, output.logits)

    def window_logits(self, windows: TextWindows) -> torch.Tensor:
        """Return float32 CPU logits ``[windows, labels]`` in window order."""
        result = torch.empty((len(windows), self.num_labels), dtype=torch.float32)
        for positions, chunk in self.iter_chunks(windows):
            logits = self._forward(chunk)
            result[torch.tensor(positions, dtype=torch.long)] = logits.float().cpu()
        return result

    def text_probabilities(self, windows: TextWindows, window_logits: torch.Tensor) -> torch.Tensor:
        """Per-text probabilities ``[texts, labels]``: `activation` per window, `reduction` over
        each text's windows."""
        logits = window_logits.float()
        if self.activation == "sigmoid":
            probabilities = torch.sigmoid(logits)
        else:
            probabilities = torch.softmax(logits, dim=-1)
        return reduce_over_windows(
            probabilities, windows.sample_index, windows.num_texts, self.reduction
        )

    def postprocess(self, windows: TextWindows, window_logits: torch.Tensor) -> list[ResultT]:
        """One result per text from its windows' logits (the task's subclass decides)."""
        raise NotImplementedError

    def predict_batch(self, texts: list[str]) -> list[ResultT]:
        """One result per text, in input order; ``[]`` for no texts."""
        checked = check_texts(texts)
        if not checked:
            return []
        windows = self.preprocess(checked)
        return self.postprocess(windows, self.window_logits(windows))

    def score_texts(self, texts: list[str]) -> torch.Tensor:
        """Per-text probabilities ``[texts, labels]`` in `info.labels` order (for the gate)."""
        if not texts:
            return torch.zeros((0, self.num_labels), dtype=torch.float32)
        windows = self.preprocess(check_texts(texts))
        return self.text_probabilities(windows, self.window_logits(windows))

    def with_runtime(self, runtime: LogitsRuntime) -> Self:
        """A copy whose forward pass is `runtime` instead of torch; all else is shared.

        Used by the ONNX accuracy gate, so both sides differ only in the forward pass.
        """
        twin = copy.copy(self)
        twin.model = None
        twin.runtime = runtime
        twin.device = torch.device("cpu")
        return twin
