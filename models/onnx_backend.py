"""ONNX Runtime backend of the sentence encoder and of the text classifiers.

Export runs once, ahead of time (``python -m pipelines.export_onnx``), and writes an artifact
directory:

    model.onnx       sentence encoder (``--model minilm``): encoder + attention-masked mean
                     pooling + L2 normalisation, output ``sentence_embedding`` (float32,
                     [batch, hidden]); or sequence classifier (``--model classifier``): the
                     whole ``AutoModelForSequenceClassification``, output ``logits`` (float32,
                     [batch, labels]). Inputs ``input_ids``, ``attention_mask`` and, where the
                     model takes them, ``token_type_ids`` (int64, [batch, tokens]).
    tokenizer files  the source checkpoint's tokenizer (``save_pretrained``); a classifier
                     artifact also holds the checkpoint's ``config.json`` (id2label, positions).
    gate.json        the accuracy gate's report (``kind`` "embedder" or "classifier"): how close
                     this model stays to the fp32 torch model on a fixed sample of texts
                     (cosine of vectors; ROC AUC per label). ``servable`` is true only when the
                     gate passed, and ``model_sha256`` ties the report to these exact bytes.

`OnnxEmbedder.load` and `OnnxClassifier.load` refuse an artifact whose gate report is missing,
failed, of the other kind, or written for other model bytes: a quantised model that drifted
from fp32 must never serve, and a copied-in ``model.onnx`` must not inherit another file's
pass. `OnnxEmbedder.predict_batch` has the contract of
`models.embeddings.MiniLMEmbedder.predict_batch` (one unit-length float list per text);
`OnnxClassifier.logits` is the forward of `models.text_windows.WindowedSequenceClassifier`
(token windows in, logits out), so windowing, labels and activations stay those of torch.

Only torch (for the export) and onnxruntime / onnx (quantisation, inference) are used here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypedDict, overload

import numpy as np
import torch
from numpy.typing import NDArray

from models.answers import ModelInfo
from models.device import (
    checkpoint_version,
    onnx_providers,
    onnx_session_device,
    require_checkpoint_dir,
)

__all__ = [
    "DEFAULT_COSINE_GATE",
    "DEFAULT_MAX_AUC_DROP",
    "DEFAULT_MIN_MEAN_COSINE",
    "DEFAULT_MIN_TEXTS",
    "DEFAULT_MIN_TEXT_COSINE",
    "GATE_FILE",
    "LOGITS_OUTPUT",
    "MODEL_FILE",
    "ArtifactNotServableError",
    "ArtifactOrigin",
    "ClassifierGateReport",
    "CosineGate",
    "GateReport",
    "OnnxClassifier",
    "OnnxEmbedder",
    "SentenceEncoder",
    "SequenceClassifierLogits",
    "additive_attention_mask",
    "artifact_origin",
    "check_servable",
    "classifier_input_names",
    "cosine_rows",
    "evaluate_gate",
    "export_sentence_encoder",
    "export_sequence_classifier",
    "ffn_output_matmuls",
    "file_sha256",
    "open_session",
    "quantize_int8",
    "read_gate_report",
    "write_gate_report",
]

MODEL_FILE = "model.onnx"
GATE_FILE = "gate.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
LOGITS_OUTPUT = "logits"
# Opset 17 is understood by every onnxruntime >= 1.14 and by the legacy (TorchScript)
# exporter; nothing newer is needed for a BERT encoder.
_OPSET = 17
# The bar: mean cosine to the fp32 vectors at least 0.99 on the fixed sample.
DEFAULT_MIN_MEAN_COSINE = 0.99
# And no single text far off: int8 with per-tensor scales had texts at 0.94 (platform notes);
# per-channel stays above ~0.98. A text below this fails the gate whatever the mean.
DEFAULT_MIN_TEXT_COSINE = 0.95
# Classifiers (issue 8): the artifact's ROC AUC may move at most this far from fp32's, per
# label that has both classes in the gate sample.
DEFAULT_MAX_AUC_DROP = 0.005
# Either gate refuses a smaller sample.
DEFAULT_MIN_TEXTS = 200
_HASH_CHUNK_BYTES = 1 << 20
# Two texts of different lengths: the traced example is padded, so the mask is in the graph.
_TRACE_TEXTS = ["an example post to trace", "a second, longer example post to trace the padding"]
# Same truncation as the torch path (models/embeddings.py).
_DEFAULT_MAX_LENGTH = 256


class ArtifactNotServableError(ValueError):
    """An ONNX artifact has no passing accuracy-gate report for its exact model bytes."""


def additive_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[batch, 1, 1, tokens]`` additive mask: 0 on real tokens, the dtype's minimum on padding.

    Built in the graph from the 2-D padding mask and handed to the model ready-made: the
    mask helpers of transformers decide some things in Python from tensor values (e.g. "no
    padding in this batch"), which tracing would freeze into the exported graph.
    """
    mask = attention_mask.to(dtype)
    return (1.0 - mask[:, None, None, :]) * torch.finfo(dtype).min


class SentenceEncoder(torch.nn.Module):
    """A BERT-family encoder with mean pooling and L2 normalisation in the graph.

    The attention mask is built here as an additive float mask and handed to the encoder
    directly: transformers' own mask helpers decide some things in Python from tensor values
    (e.g. "no padding in this batch"), which tracing would freeze into the exported graph.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        """Wrap a loaded ``AutoModel`` that has ``embeddings`` and ``encoder`` submodules."""
        super().__init__()
        if not hasattr(model, "embeddings") or not hasattr(model, "encoder"):
            raise ValueError(
                f"{type(model).__name__} has no `embeddings`/`encoder` submodules; the ONNX "
                "export supports BERT-family encoders (all-MiniLM-L6-v2, BERT, RoBERTa)"
            )
        # Only these two run; the model's pooler (a [CLS] head) is not part of the graph.
        self.embeddings: torch.nn.Module = model.embeddings  # type: ignore[assignment]
        self.encoder: torch.nn.Module = model.encoder  # type: ignore[assignment]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Unit vectors ``[batch, hidden]`` from token ids and the padding mask."""
        embedded = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        mask = attention_mask.to(embedded.dtype)
        additive = additive_attention_mask(attention_mask, embedded.dtype)
        hidden = self.encoder(embedded, attention_mask=additive).last_hidden_state
        weights = mask.unsqueeze(-1)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def export_sentence_encoder(
    checkpoint: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> Path:
    """Export a local checkpoint's encoder (fp32) to ``out_dir/model.onnx`` plus its tokenizer.

    Any old ``gate.json`` in ``out_dir`` is deleted first, so a fresh export is not servable
    until the gate has been run on it. Returns the path of ``model.onnx``.

    Raises:
        FileNotFoundError: `checkpoint` is not a local checkpoint directory.
        ValueError: The model is not a BERT-family encoder.
    """
    from transformers import AutoModel, AutoTokenizer

    source = require_checkpoint_dir(checkpoint)
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    (target / GATE_FILE).unlink(missing_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    # Eager attention: plain matmul + softmax ops, which the legacy exporter maps 1:1.
    model = AutoModel.from_pretrained(source, local_files_only=True, attn_implementation="eager")
    # eval() on the wrapper, not only the model: the exporter restores the wrapper's
    # training flag recursively afterwards, which would switch dropout on in `model`.
    wrapper = SentenceEncoder(model).eval()
    example = tokenizer(_TRACE_TEXTS, padding=True, return_tensors="pt")
    model_path = _export_graph(wrapper, example, INPUT_NAMES, OUTPUT_NAME, target)
    tokenizer.save_pretrained(str(target))
    return model_path


def _export_graph(
    wrapper: torch.nn.Module,
    example: Any,
    input_names: tuple[str, ...],
    output_name: str,
    target: Path,
) -> Path:
    """Trace `wrapper` on the tokenised `example` into ``target/model.onnx`` (fp32).

    Batch and token axes are dynamic; returns the model path.
    """
    inputs = tuple(_int64_input(example, name) for name in input_names)
    model_path = target / MODEL_FILE
    axes = {name: {0: "batch", 1: "tokens"} for name in input_names}
    axes[output_name] = {0: "batch"}
    with torch.inference_mode():
        # dynamo=False: the TorchScript exporter needs neither onnxscript nor torch.export.
        torch.onnx.export(
            wrapper,
            inputs,
            str(model_path),
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_axes=axes,
            opset_version=_OPSET,
            dynamo=False,
        )
    return model_path


class SequenceClassifierLogits(torch.nn.Module):
    """A loaded ``AutoModelForSequenceClassification`` returning only its logits.

    The padding mask goes in as a ready 4-D additive mask (`additive_attention_mask`), which
    transformers passes through untouched, so the traced graph masks every batch alike.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        """Wrap a loaded sequence classifier (BERT, DistilBERT, RoBERTa, ...)."""
        super().__init__()
        self.model = model
        self.dtype = next(model.parameters()).dtype

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[batch, labels]`` from token ids and the 2-D padding mask."""
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        output = self.model(
            input_ids=input_ids,
            attention_mask=additive_attention_mask(attention_mask, self.dtype),
            **extra,
        )
        logits: torch.Tensor = output.logits
        return logits


def classifier_input_names(model: torch.nn.Module, tokenizer: Any) -> tuple[str, ...]:
    """Graph inputs of a classifier: ids and mask, plus segment ids where both use them."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask"]
    # DistilBERT has no segment embeddings: its forward takes no token_type_ids at all.
    if "token_type_ids" in getattr(tokenizer, "model_input_names", ()) and (
        "token_type_ids" in accepted
    ):
        names.append("token_type_ids")
    return tuple(names)


def export_sequence_classifier(
    checkpoint: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> Path:
    """Export a local sequence classifier (fp32, output ``logits``) to ``out_dir/model.onnx``.

    The tokenizer files and the checkpoint's ``config.json`` (id2label, position limit) are
    written next to it. Any old ``gate.json`` is deleted first, so a fresh export is not
    servable until the gate has been run on it. Returns the path of ``model.onnx``.

    Raises:
        FileNotFoundError: `checkpoint` is not a local checkpoint directory.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = require_checkpoint_dir(checkpoint)
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    (target / GATE_FILE).unlink(missing_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    # Eager attention: plain matmul + softmax ops, which the legacy exporter maps 1:1.
    model = AutoModelForSequenceClassification.from_pretrained(
        source, local_files_only=True, attn_implementation="eager"
    )
    # eval() on the wrapper (see export_sentence_encoder): dropout stays off after export.
    wrapper = SequenceClassifierLogits(model).eval()
    names = classifier_input_names(model, tokenizer)
    example = tokenizer(_TRACE_TEXTS, padding=True, return_tensors="pt")
    model_path = _export_graph(wrapper, example, names, LOGITS_OUTPUT, target)
    tokenizer.save_pretrained(str(target))
    model.config.save_pretrained(str(target))
    return model_path


def _int64_input(encoded: Any, name: str) -> torch.Tensor:
    if name in encoded:
        tensor: torch.Tensor = encoded[name].to(torch.int64)
        return tensor
    # Tokenizers without segment ids (RoBERTa-style): one segment, all zeros.
    ids: torch.Tensor = encoded["input_ids"]
    return torch.zeros_like(ids, dtype=torch.int64)


def ffn_output_matmuls(model_path: str | os.PathLike[str]) -> list[str]:
    """Names of the feed-forward output projections.

    BERT / RoBERTa / MiniLM: ``layer.N/output/dense/MatMul``; DistilBERT:
    ``layer.N/ffn/lin2/MatMul``.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and (
            (node.name.endswith("/output/dense/MatMul") and "/attention/" not in node.name)
            or node.name.endswith("/ffn/lin2/MatMul")
        )
    ]


def quantize_int8(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    keep_ffn_output_fp32: bool = True,
) -> dict[str, Any]:
    """Dynamic int8 quantisation of weight MatMuls and embedding tables, per output channel.

    ``per_channel=True`` matters: per-tensor scales moved MiniLM's vectors to a mean cosine
    of ~0.96 against fp32. Per-channel alone still gave 0.989 (lowest 0.959) on the gate's
    tweets, because the feed-forward output projections read GELU outputs whose long tail
    makes the per-call activation scale coarse; keeping those six MatMuls in fp32 gave 0.993
    (lowest 0.965; 400 texts, embedding tables int8 too: 34 MB instead of 90 MB). Returns
    the recipe, which goes into the gate report.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = ffn_output_matmuls(source) if keep_ffn_output_fp32 else []
    quantize_dynamic(
        model_input=str(source),
        model_output=str(target),
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gather"],
        nodes_to_exclude=excluded,
    )
    return {
        "method": "onnxruntime quantize_dynamic",
        "weight_type": "QInt8",
        "per_channel": True,
        "op_types": ["MatMul", "Gather"],
        "fp32_nodes": excluded,
    }


def cosine_rows(reference: NDArray[np.float32], candidate: NDArray[np.float32]) -> NDArray[Any]:
    """Cosine similarity of each row of `candidate` to the same row of `reference`."""
    if reference.shape != candidate.shape:
        raise ValueError(
            f"reference has shape {reference.shape} but candidate {candidate.shape}; embed "
            "the same texts with both models"
        )
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    result: NDArray[Any] = (ref * cand).sum(axis=1) / np.maximum(norms, 1e-12)
    return result


class ArtifactOrigin(TypedDict):
    """What an artifact was exported from and gated on (every gate report records it)."""

    sample_sha256: str
    source_checkpoint: str
    source_version: str
    name: str


def artifact_origin(
    checkpoint: str | os.PathLike[str], texts: list[str], name: str | None = None
) -> ArtifactOrigin:
    """The origin of an artifact exported from `checkpoint` and gated on `texts`.

    The texts are kept only as a hash; `name` defaults to the checkpoint directory's name.
    """
    directory = require_checkpoint_dir(checkpoint)
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return ArtifactOrigin(
        sample_sha256=digest.hexdigest(),
        source_checkpoint=str(directory),
        source_version=checkpoint_version(directory),
        name=name or directory.resolve().name,
    )


@dataclass(frozen=True, kw_only=True)
class _GateReport:
    """What every accuracy gate records: the verdict, the model file and its origin."""

    servable: bool
    model_sha256: str
    quantized: bool
    num_texts: int
    sample_sha256: str
    source_checkpoint: str
    source_version: str
    name: str
    reasons: list[str] = field(default_factory=list)
    quantization: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class GateReport(_GateReport):
    """What the accuracy gate of a sentence encoder measured, and whether it may serve."""

    mean_cosine: float
    min_cosine: float
    p05_cosine: float
    min_mean_cosine: float
    min_text_cosine: float
    # Reports written before classifiers had artifacts carry no kind: they are embedders.
    kind: str = "embedder"


@dataclass(frozen=True, kw_only=True)
class ClassifierGateReport(_GateReport):
    """The accuracy gate of a sequence-classifier artifact (``kind`` "classifier").

    Per label, ROC AUC of the fp32 torch scores and of the artifact's scores against the
    same truth; the artifact may serve only if every label that has both classes in the
    sample keeps its AUC within `max_allowed_auc_drop` of fp32's. `gate_mode` says what the
    truth was: ``"labels"`` (a labelled held-out split, `sample` names it) or
    ``"reference"`` (fp32's own decisions, score > 0.5: the gate then measures agreement).
    AUCs of labels with one class only in the sample are ``None`` (undefined, not gated).
    """

    task: str
    gate_mode: str
    labels: list[str]
    auc_fp32: dict[str, float | None]
    auc_artifact: dict[str, float | None]
    auc_drop: dict[str, float | None]
    max_auc_drop: float
    max_allowed_auc_drop: float
    sample: str
    kind: str = "classifier"


_REPORT_TYPES: dict[str, type[GateReport] | type[ClassifierGateReport]] = {
    "embedder": GateReport,
    "classifier": ClassifierGateReport,
}
_EXPORT_MODEL = {"embedder": "minilm", "classifier": "classifier"}


@dataclass(frozen=True)
class CosineGate:
    """The bar of a sentence-encoder artifact: at least `min_texts` texts, a mean cosine to
    the fp32 vectors of at least `min_mean_cosine`, and no text below `min_text_cosine`."""

    min_mean_cosine: float = DEFAULT_MIN_MEAN_COSINE
    min_text_cosine: float = DEFAULT_MIN_TEXT_COSINE
    min_texts: int = DEFAULT_MIN_TEXTS


DEFAULT_COSINE_GATE = CosineGate()


def evaluate_gate(
    reference: NDArray[np.float32],
    candidate: NDArray[np.float32],
    *,
    model_path: Path,
    origin: ArtifactOrigin,
    quantization: dict[str, Any] | None = None,
    gate: CosineGate = DEFAULT_COSINE_GATE,
) -> GateReport:
    """Compare `candidate` vectors to the fp32 `reference` ones; servable if they clear `gate`."""
    cosines = cosine_rows(reference, candidate)
    reasons: list[str] = []
    count = int(cosines.shape[0])
    if count < gate.min_texts:
        reasons.append(f"sample has {count} texts; the gate needs at least {gate.min_texts}")
    mean = float(cosines.mean()) if count else 0.0
    lowest = float(cosines.min()) if count else 0.0
    if mean < gate.min_mean_cosine:
        reasons.append(f"mean cosine to fp32 {mean:.4f} is below {gate.min_mean_cosine}")
    if lowest < gate.min_text_cosine:
        reasons.append(f"lowest cosine to fp32 {lowest:.4f} is below {gate.min_text_cosine}")
    return GateReport(
        **origin,
        servable=not reasons,
        model_sha256=file_sha256(model_path),
        quantized=quantization is not None,
        num_texts=count,
        mean_cosine=mean,
        min_cosine=lowest,
        p05_cosine=float(np.percentile(cosines, 5)) if count else 0.0,
        min_mean_cosine=gate.min_mean_cosine,
        min_text_cosine=gate.min_text_cosine,
        reasons=reasons,
        quantization=quantization,
    )


def write_gate_report(
    artifact_dir: str | os.PathLike[str], report: GateReport | ClassifierGateReport
) -> Path:
    """Write ``gate.json`` next to the model."""
    path = Path(artifact_dir) / GATE_FILE
    path.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return path


def read_gate_report(artifact_dir: str | os.PathLike[str]) -> GateReport | ClassifierGateReport:
    """Read ``gate.json``; raises `ArtifactNotServableError` when it is missing or unreadable."""
    path = Path(artifact_dir) / GATE_FILE
    if not path.is_file():
        raise ArtifactNotServableError(
            f"{str(path)!r} is missing: this ONNX artifact has not passed the accuracy gate; "
            "build it with `python -m pipelines.export_onnx --model minilm|classifier --out "
            "DIR` (add --quantize for int8)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        report_type = _REPORT_TYPES[str(data.get("kind", "embedder"))]
        return report_type(**data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ArtifactNotServableError(
            f"{str(path)!r} is not a gate report written by pipelines.export_onnx ({exc!r}); "
            "export the artifact again"
        ) from exc


@overload
def check_servable(
    artifact_dir: str | os.PathLike[str], kind: Literal["embedder"] = "embedder"
) -> GateReport: ...


@overload
def check_servable(
    artifact_dir: str | os.PathLike[str], kind: Literal["classifier"]
) -> ClassifierGateReport: ...


def check_servable(
    artifact_dir: str | os.PathLike[str], kind: str = "embedder"
) -> GateReport | ClassifierGateReport:
    """The artifact's gate report, if it passed for exactly this ``model.onnx``; else raise.

    Args:
        artifact_dir: Directory written by ``python -m pipelines.export_onnx``.
        kind: What the caller serves: ``"embedder"`` (sentence vectors) or ``"classifier"``
            (logits); an artifact of the other kind is refused.

    Raises:
        FileNotFoundError: No ``model.onnx`` in `artifact_dir`.
        ArtifactNotServableError: The report is missing, failed, of another kind, or for
            other model bytes.
    """
    directory = Path(artifact_dir)
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        raise FileNotFoundError(
            f"{str(model_path)!r} does not exist; `onnx_path` must be a directory written by "
            "`python -m pipelines.export_onnx`"
        )
    report = read_gate_report(directory)
    if report.kind != kind:
        raise ArtifactNotServableError(
            f"ONNX artifact {str(directory)!r} is a {report.kind} artifact, but a {kind} is "
            f"being loaded from it; export one with `python -m pipelines.export_onnx --model "
            f"{_EXPORT_MODEL.get(kind, kind)}`"
        )
    if not report.servable:
        raise ArtifactNotServableError(
            f"ONNX artifact {str(directory)!r} failed its accuracy gate "
            f"({'; '.join(report.reasons) or 'not servable'}); serve backend `torch` or "
            "export again (without --quantize, or with another quantisation)"
        )
    actual = file_sha256(model_path)
    if actual != report.model_sha256:
        raise ArtifactNotServableError(
            f"{str(model_path)!r} is not the file its gate report was written for (sha256 "
            f"{actual[:12]} != {report.model_sha256[:12]}); run pipelines.export_onnx again "
            "instead of copying model files"
        )
    return report


def open_session(model_path: Path, intra_op_num_threads: int, device: str = "cpu") -> Any:
    """An onnxruntime session for one replica: sequential, sleeping (not spinning) threads.

    `device`: ``"cpu"``, or ``"auto"`` / ``"cuda[:N]"`` for the CUDA provider when this
    onnxruntime has it (`models.device.onnx_providers`).

    Raises:
        ValueError: Negative `intra_op_num_threads`.
    """
    import onnxruntime

    if intra_op_num_threads < 0:
        raise ValueError(
            f"intra_op_num_threads={intra_op_num_threads} is negative; use 0 (onnxruntime's "
            "default) or a thread count"
        )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_num_threads
    # One graph, run op after op: inter-op threads would only compete for the same cores.
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Idle worker threads sleep instead of spinning: in a replica they share a small box
    # with the proxy and ingress, and a spinning pool burns the CPU those need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        str(model_path), sess_options=options, providers=onnx_providers(device)
    )


# What an artifact opened by the gate itself reports (it is never served).
_GATE_CANDIDATE = ModelInfo(name="gate-candidate", version="unchecked", device="cpu", labels=())


def _served_info(
    report: GateReport | ClassifierGateReport, name: str, labels: tuple[str, ...]
) -> ModelInfo:
    """``<name>-onnx-int8`` (or ``-fp32``), version = the model file's SHA-256 prefix, CPU
    (the loaders put the device their session got)."""
    precision = "int8" if report.quantized else "fp32"
    return ModelInfo(
        name=f"{name}-onnx-{precision}",
        version=report.model_sha256[:12],
        device="cpu",
        labels=labels,
    )


class OnnxEmbedder:
    """Unit sentence vectors from a gated ONNX artifact; the contract of `MiniLMEmbedder`."""

    def __init__(
        self,
        tokenizer: Any,
        session: Any,
        info: ModelInfo,
        max_length: int,
        report: GateReport | None,
    ) -> None:
        """Wrap a tokenizer and an onnxruntime session; use `load` instead of calling this."""
        self._tokenizer = tokenizer
        self._session = session
        self._input_names = {item.name for item in session.get_inputs()}
        self.info = info
        self.max_length = max_length
        self.gate = report
        self.dim = int(session.get_outputs()[0].shape[-1])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        max_length: int = _DEFAULT_MAX_LENGTH,
        intra_op_num_threads: int = 0,
        device: str = "cpu",
    ) -> OnnxEmbedder:
        """Load a gated artifact directory (model.onnx, tokenizer, gate.json).

        Args:
            path: Directory written by ``python -m pipelines.export_onnx``.
            max_length: Tokens kept per text (longer texts are truncated).
            intra_op_num_threads: onnxruntime threads for one call; 0 = its default (one
                per physical core).
            device: ``"cpu"``, or ``"auto"`` / ``"cuda[:N]"`` for onnxruntime's CUDA
                provider when installed (the info's device says what the session got).

        Raises:
            FileNotFoundError: No ``model.onnx`` in `path`.
            ArtifactNotServableError: Its gate report is missing, failed or stale.
            ValueError: `max_length` below 8 or negative `intra_op_num_threads`.
        """
        report = check_servable(path)
        info = _served_info(report, report.name, ())
        return cls._open(Path(path), info, max_length, intra_op_num_threads, report, device)

    @classmethod
    def load_for_gate(
        cls, path: str | os.PathLike[str], max_length: int = _DEFAULT_MAX_LENGTH
    ) -> OnnxEmbedder:
        """Open an artifact WITHOUT checking its gate report: for the gate itself only."""
        return cls._open(Path(path), _GATE_CANDIDATE, max_length, 0, None)

    @classmethod
    def _open(
        cls,
        directory: Path,
        info: ModelInfo,
        max_length: int,
        intra_op_num_threads: int,
        report: GateReport | None,
        device: str = "cpu",
    ) -> OnnxEmbedder:
        from transformers import AutoTokenizer

        if max_length < 8:
            raise ValueError(f"max_length={max_length} is too small; use at least 8 tokens")
        session = open_session(directory / MODEL_FILE, intra_op_num_threads, device)
        if report is not None:
            info = replace(info, device=onnx_session_device(session))
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        return cls(tokenizer, session, info, max_length, report)

    def preprocess(self, texts: list[str]) -> dict[str, NDArray[np.int64]]:
        """Tokenise with padding and truncation into int64 arrays named as the graph's inputs."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is {type(text).__name__}; send a str")
        encoded = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        ids = np.asarray(encoded["input_ids"], dtype=np.int64)
        feeds = {
            "input_ids": ids,
            "attention_mask": np.asarray(encoded["attention_mask"], dtype=np.int64),
            "token_type_ids": np.asarray(
                encoded.get("token_type_ids", np.zeros_like(ids)), dtype=np.int64
            ),
        }
        return {name: value for name, value in feeds.items() if name in self._input_names}

    def _forward(self, feeds: dict[str, NDArray[np.int64]]) -> NDArray[np.float32]:
        outputs = self._session.run([OUTPUT_NAME], feeds)
        return np.asarray(outputs[0], dtype=np.float32)

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """Unit vectors for ``texts`` as one float32 array ``(len(texts), dim)``."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._forward(self.preprocess(texts))

    def predict_batch(self, texts: list[str]) -> list[list[float]]:
        """One unit vector (a list of floats) per text, in input order."""
        return [row.tolist() for row in self.embed(texts)]


class OnnxClassifier:
    """Logits of a gated sequence-classifier artifact: the forward of the windowed classifiers.

    Tokenising, windowing, label order and sigmoid/softmax stay in
    `models.text_windows.WindowedSequenceClassifier`; this object replaces only its model
    call (`logits`). `directory` holds the tokenizer and ``config.json`` the classifier
    loads alongside.
    """

    def __init__(
        self,
        session: Any,
        info: ModelInfo,
        directory: Path,
        report: ClassifierGateReport | None,
    ) -> None:
        """Wrap an onnxruntime session; use `load` instead of calling this."""
        self._session = session
        self.input_names = tuple(str(item.name) for item in session.get_inputs())
        self.info = info
        self.directory = directory
        self.gate = report

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        intra_op_num_threads: int = 0,
        name: str | None = None,
        device: str = "cpu",
    ) -> OnnxClassifier:
        """Open a gated classifier artifact (model.onnx, tokenizer, config.json, gate.json).

        The reported name is `name` (default: the exported checkpoint's, from gate.json)
        plus ``-onnx-int8`` or ``-onnx-fp32``; the version is the first 12 hex characters
        of the model file's SHA-256. `device` as for `OnnxEmbedder.load`.

        Raises:
            FileNotFoundError: No ``model.onnx`` in `path`.
            ArtifactNotServableError: Its gate report is missing, failed, stale or not a
                classifier's.
            ValueError: Negative `intra_op_num_threads`.
        """
        report = check_servable(path, "classifier")
        info = _served_info(report, name or report.name, tuple(report.labels))
        directory = Path(path)
        session = open_session(directory / MODEL_FILE, intra_op_num_threads, device)
        info = replace(info, device=onnx_session_device(session))
        return cls(session, info, directory, report)

    @classmethod
    def load_for_gate(cls, path: str | os.PathLike[str]) -> OnnxClassifier:
        """Open an artifact WITHOUT checking its gate report: for the gate itself only."""
        directory = Path(path)
        return cls(open_session(directory / MODEL_FILE, 0), _GATE_CANDIDATE, directory, None)

    def logits(self, features: Mapping[str, Any]) -> NDArray[np.float32]:
        """Logits ``[batch, labels]`` for one padded token batch.

        Args:
            features: ``input_ids``, ``attention_mask`` and optionally ``token_type_ids``,
                each ``[batch, tokens]`` integers (numpy arrays or nested lists). Inputs the
                graph does not take are dropped; missing segment ids are all zeros.
        """
        ids = np.asarray(features["input_ids"], dtype=np.int64)
        feeds = {
            name: (
                np.asarray(features[name], dtype=np.int64)
                if name in features
                else np.zeros_like(ids)
            )
            for name in self.input_names
        }
        outputs = self._session.run([LOGITS_OUTPUT], feeds)
        return np.asarray(outputs[0], dtype=np.float32)


def copy_tokenizer(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy tokenizer files from one artifact directory to another (fp32 → int8 variants)."""
    for item in Path(source).iterdir():
        if item.is_file() and item.name not in (MODEL_FILE, GATE_FILE):
            shutil.copy2(item, Path(target) / item.name)
