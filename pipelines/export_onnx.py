"""Export a model to ONNX (optionally int8) and run the accuracy gate on it.

    python -m pipelines.export_onnx --model minilm --out artifacts/minilm-onnx
    python -m pipelines.export_onnx --model minilm --out artifacts/minilm-int8 --quantize
    python -m pipelines.export_onnx --model classifier --checkpoint /srv/models/toxic-bert \
        --out /srv/models/toxic-bert-int8 --quantize

Writes ``model.onnx``, the tokenizer files and ``gate.json`` into ``--out`` (a classifier
artifact also gets the checkpoint's ``config.json``).

``--model minilm`` (the sentence encoder): the gate embeds a fixed, seeded sample of texts
(default: 200 tweets from each of the two public sets under ``../shared/data``; see its README)
with the fp32 torch model and with the exported one, and marks the artifact servable only when
the mean cosine is at least ``--min-mean-cosine`` and no text is below ``--min-text-cosine``.

``--model classifier`` (a sequence classifier served by TextModeration or Sentiment with
``kind: transformer``): the gate scores a held-out sample with the fp32 torch model and with
the artifact, through the same windowing and sigmoid (moderation) / softmax (sentiment) as
serving, and passes when, for every label with both classes in the sample, the artifact's ROC
AUC is within ``--max-auc-drop`` (0.005) of fp32's. The sample is the held-out TEST split the
text heads are scored on (pipelines.data.stratified_split, 20%, seed 0) of ``--gate-data``
(default: the head jobs' files, ``toxicity/davidson_train.csv`` for moderation, the three
``sentiment/*_GroundTruth.txt`` for sentiment), at most ``--gate-max-texts`` (1000) of it.
Truth per label: moderation labels naming "hate" against Davidson's hate-speech class, the
others against hate-or-offensive; sentiment labels against the VADER raters' class (mean
rating > 0.5 positive, < -0.5 negative).
``--gate-reference`` uses fp32's own decisions (score > 0.5) as the truth instead, so the gate
measures agreement (for checkpoints no labelled set fits); gate.json says which mode ran.

The serving nodes (``backend: onnx``) refuse an artifact whose report is missing or failed.
Exit code 0: servable; 2: the gate failed (the artifact stays on disk with its failing report,
for inspection). No text is printed or stored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from configs.pipelines import load_job_config
from models.embeddings import MiniLMEmbedder, default_model_dir
from models.heads import DAVIDSON_HATE, DAVIDSON_NEITHER, SENTIMENT_HEAD_LABELS
from models.onnx_backend import (
    DEFAULT_MAX_AUC_DROP,
    DEFAULT_MIN_MEAN_COSINE,
    DEFAULT_MIN_TEXT_COSINE,
    GATE_FILE,
    MODEL_FILE,
    ClassifierGateReport,
    GateReport,
    OnnxClassifier,
    OnnxEmbedder,
    copy_tokenizer,
    evaluate_gate,
    export_sentence_encoder,
    export_sequence_classifier,
    file_sha256,
    quantize_int8,
    source_identity,
    write_gate_report,
)
from models.sentiment import canonical_sentiment_labels
from models.text_classifier import SUPPORTED_TASKS, task_spec
from models.text_windows import WindowedSequenceClassifier
from pipelines.data import (
    LabelledTexts,
    load_labelled,
    read_davidson_csv,
    read_vader_ground_truth,
    stratified_split,
)
from pipelines.evaluation import auc

__all__ = [
    "DEFAULT_GATE_DATA",
    "DEFAULT_SAMPLE_FILES",
    "export_and_gate",
    "export_and_gate_classifier",
    "gate_sample",
    "held_out_gate_rows",
    "infer_task",
    "main",
]

logger = logging.getLogger("pipelines.export_onnx")

_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Two registers of short social text: rated tweets and (offensive-heavy) tweets.
DEFAULT_SAMPLE_FILES = (
    _SHARED_DATA / "sentiment" / "tweets_GroundTruth.txt",
    _SHARED_DATA / "toxicity" / "davidson_train.csv",
)
# Labelled data of the classifier gate, per task (../shared/data/README.md): the files the
# text heads train on (configs/pipelines/*_head.yaml), whose held-out test split is the sample.
DEFAULT_GATE_DATA = {
    "moderation": (_SHARED_DATA / "toxicity" / "davidson_train.csv",),
    "sentiment": tuple(
        _SHARED_DATA / "sentiment" / f"{name}_GroundTruth.txt"
        for name in ("tweets", "amazonReviewSnippets", "nytEditorialSnippets")
    ),
}
_HEAD_JOBS = Path(__file__).resolve().parents[1] / "configs" / "pipelines"
_MODELS = ("minilm", "classifier")
_TASKS = tuple(SUPPORTED_TASKS)
# Texts embedded / scored per call while gating: quick, and little memory.
_GATE_BATCH = 64
# Reference mode: a label is "on" where fp32's probability is above this.
_REFERENCE_THRESHOLD = 0.5


def gate_sample(files: list[Path], per_file: int, seed: int = 0) -> list[str]:
    """A fixed sample: `per_file` texts from each file, chosen with a seeded generator.

    ``.csv`` files are read as Davidson et al. CSVs, anything else as VADER ground truth.
    """
    texts: list[str] = []
    rng = np.random.default_rng(seed)
    for path in files:
        rows = (
            read_davidson_csv(path).texts
            if path.suffix == ".csv"
            else read_vader_ground_truth(path).texts
        )
        chosen = np.sort(rng.choice(len(rows), size=min(per_file, len(rows)), replace=False))
        texts.extend(rows[i] for i in chosen)
    return texts


def _sample_sha256(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def _embed_all(model: MiniLMEmbedder | OnnxEmbedder, texts: list[str]) -> np.ndarray:
    parts = [model.embed(texts[i : i + _GATE_BATCH]) for i in range(0, len(texts), _GATE_BATCH)]
    return np.concatenate(parts).astype(np.float32)


def _build_artifact(
    export: Callable[[Path | str, Path | str], Path],
    checkpoint: Path,
    out_dir: Path,
    quantize: bool,
    keep_ffn_output_fp32: bool,
) -> dict[str, Any] | None:
    """Export into `out_dir`, int8 when `quantize`; returns the quantisation recipe or None.

    Any old gate.json is removed: the new model is not servable until it is gated.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if not quantize:
        export(checkpoint, out_dir)
        return None
    with tempfile.TemporaryDirectory(prefix="export-fp32-") as scratch:
        fp32_path = export(checkpoint, scratch)
        # The fp32 export lives only in scratch: the artifact holds the int8 model.
        (out_dir / GATE_FILE).unlink(missing_ok=True)
        recipe = quantize_int8(fp32_path, out_dir / MODEL_FILE, keep_ffn_output_fp32)
        copy_tokenizer(scratch, out_dir)
    return recipe


def export_and_gate(
    checkpoint: Path,
    out_dir: Path,
    texts: list[str],
    quantize: bool,
    keep_ffn_output_fp32: bool = True,
    max_length: int = 256,
    min_mean_cosine: float = DEFAULT_MIN_MEAN_COSINE,
    min_text_cosine: float = DEFAULT_MIN_TEXT_COSINE,
    min_texts: int = 200,
    name: str = "all-MiniLM-L6-v2",
) -> GateReport:
    """Export (and quantise) `checkpoint` into `out_dir`, gate it on `texts`, write gate.json."""
    recipe = _build_artifact(
        export_sentence_encoder, checkpoint, out_dir, quantize, keep_ffn_output_fp32
    )
    reference = _embed_all(MiniLMEmbedder.load(checkpoint, "cpu", max_length), texts)
    candidate = _embed_all(OnnxEmbedder.load_for_gate(out_dir, max_length), texts)
    source_dir, source_version = source_identity(checkpoint)
    report = evaluate_gate(
        reference,
        candidate,
        model_path=out_dir / MODEL_FILE,
        quantization=recipe,
        sample_sha256=_sample_sha256(texts),
        source_checkpoint=source_dir,
        source_version=source_version,
        name=name,
        min_mean_cosine=min_mean_cosine,
        min_text_cosine=min_text_cosine,
        min_texts=min_texts,
    )
    write_gate_report(out_dir, report)
    return report


def infer_task(checkpoint: Path) -> str:
    """``"sentiment"`` when id2label names positive/negative(/neutral), else ``"moderation"``."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(checkpoint), local_files_only=True)
    names = [str(config.id2label[i]) for i in sorted(config.id2label)]
    try:
        canonical_sentiment_labels(names, str(checkpoint))
    except ValueError:
        return "moderation"
    return "sentiment"


def held_out_gate_rows(task: str, files: list[Path], max_texts: int | None) -> LabelledTexts:
    """The held-out TEST split of `files`, split as the text heads are, capped to `max_texts`.

    Reader, split fractions, soft targets and seed come from the task's head job
    (``configs/pipelines/<task>_head.yaml``: test 20%, validation 10%, seed 0) and go through
    the same `load_labelled` and `stratified_split` as `pipelines.text_heads.prepare_data`,
    so on the default files these are exactly the rows the heads are evaluated on; a larger
    split is cut to a sample of `max_texts` rows drawn with the same seed.
    """
    job = load_job_config(_HEAD_JOBS / f"{task}_head.yaml")
    data = load_labelled(task, [str(path) for path in files], job.soft_targets, None, job.seed)
    split = stratified_split(data.classes, job.validation_fraction, job.test_fraction, job.seed)
    rows = split.test
    if max_texts is not None and len(rows) > max_texts:
        rng = np.random.default_rng(job.seed)
        rows = np.sort(rng.choice(rows, size=max_texts, replace=False))
    return data.subset(rows)


def _label_truth(task: str, label: str, classes: np.ndarray) -> np.ndarray:
    """Binary truth for one served label from the data set's classes (see the docstring)."""
    if task == "sentiment":
        return np.asarray(classes == SENTIMENT_HEAD_LABELS.index(label))
    if "hate" in label.lower():
        return np.asarray(classes == DAVIDSON_HATE)
    return np.asarray(classes != DAVIDSON_NEITHER)


def _score_all(model: WindowedSequenceClassifier[Any], texts: list[str]) -> np.ndarray:
    parts = [
        model.score_texts(texts[i : i + _GATE_BATCH]).numpy()
        for i in range(0, len(texts), _GATE_BATCH)
    ]
    return np.concatenate(parts).astype(np.float64)


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def export_and_gate_classifier(
    checkpoint: Path,
    out_dir: Path,
    texts: list[str],
    quantize: bool,
    task: str | None = None,
    classes: np.ndarray | None = None,
    keep_ffn_output_fp32: bool = True,
    max_length: int | None = None,
    stride: int = 64,
    max_auc_drop: float = DEFAULT_MAX_AUC_DROP,
    min_texts: int = 200,
    name: str | None = None,
    sample: str = "texts given by the caller",
) -> ClassifierGateReport:
    """Export (and quantise) a sequence classifier into `out_dir`, gate it, write gate.json.

    Args:
        checkpoint: Local ``save_pretrained`` directory of the classifier.
        out_dir: Artifact directory.
        texts: The gate sample.
        quantize: Dynamic int8, per output channel (`models.onnx_backend.quantize_int8`).
        task: ``"moderation"`` (sigmoid, max over windows) or ``"sentiment"`` (softmax, mean);
            default `infer_task`.
        classes: Data set classes of `texts` (Davidson class / index into
            SENTIMENT_HEAD_LABELS): labels mode. None: reference mode (fp32's decisions).
        keep_ffn_output_fp32: Leave the feed-forward output MatMuls in fp32.
        max_length: Tokens per window (default: the model's limit, as served).
        stride: Tokens shared by consecutive windows of a long text (as served).
        max_auc_drop: Largest allowed |AUC(artifact) - AUC(fp32)| per gated label.
        min_texts: Smallest sample the gate accepts.
        name: Reported model name; default the checkpoint directory's name.
        sample: Description of the sample, recorded in gate.json.
    """
    resolved_task = task or infer_task(checkpoint)
    if resolved_task not in _TASKS:
        raise ValueError(f"task {resolved_task!r} is not one of {', '.join(_TASKS)}")
    if not texts:
        raise ValueError("the gate sample is empty; give texts to score")
    if classes is not None and len(classes) != len(texts):
        raise ValueError(f"{len(classes)} classes for {len(texts)} texts; give one per text")
    recipe = _build_artifact(
        export_sequence_classifier, checkpoint, out_dir, quantize, keep_ffn_output_fp32
    )
    transformer = task_spec(resolved_task).transformer
    fp32 = transformer.load(checkpoint, "cpu", max_length=max_length, stride=stride)
    candidate = fp32.with_runtime(OnnxClassifier.load_for_gate(out_dir))
    reference_scores = _score_all(fp32, texts)
    candidate_scores = _score_all(candidate, texts)
    mode = "reference" if classes is None else "labels"
    auc_fp32: dict[str, float | None] = {}
    auc_artifact: dict[str, float | None] = {}
    auc_drop: dict[str, float | None] = {}
    reasons: list[str] = []
    for index, label in enumerate(fp32.id2label):
        if classes is None:
            truth = reference_scores[:, index] > _REFERENCE_THRESHOLD
        else:
            truth = _label_truth(resolved_task, fp32.info.labels[index], classes)
        before = _finite(auc(truth, reference_scores[:, index]))
        after = _finite(auc(truth, candidate_scores[:, index]))
        auc_fp32[label], auc_artifact[label] = before, after
        drop = None if before is None or after is None else round(before - after, 6)
        auc_drop[label] = drop
        if drop is not None and abs(drop) > max_auc_drop:
            reasons.append(
                f"label {label!r}: ROC AUC {after:.4f} vs fp32 {before:.4f} moves by more than "
                f"{max_auc_drop}"
            )
    gated = [value for value in auc_drop.values() if value is not None]
    if not gated:
        reasons.append(
            "no label has both classes in the sample, so no AUC could be compared; use more "
            "texts" + ("" if classes is None else " or --gate-reference")
        )
    if len(texts) < min_texts:
        reasons.append(f"sample has {len(texts)} texts; the gate needs at least {min_texts}")
    source_dir, source_version = source_identity(checkpoint)
    report = ClassifierGateReport(
        servable=not reasons,
        model_sha256=file_sha256(out_dir / MODEL_FILE),
        quantized=recipe is not None,
        task=resolved_task,
        gate_mode=mode,
        labels=list(fp32.id2label),
        num_texts=len(texts),
        auc_fp32=auc_fp32,
        auc_artifact=auc_artifact,
        auc_drop=auc_drop,
        max_auc_drop=max(gated) if gated else 0.0,
        max_allowed_auc_drop=max_auc_drop,
        sample=sample,
        sample_sha256=_sample_sha256(texts),
        source_checkpoint=source_dir,
        source_version=source_version,
        name=name or Path(source_dir).resolve().name,
        reasons=reasons,
        quantization=recipe,
    )
    write_gate_report(out_dir, report)
    return report


def _gate_data_description(task: str, files: list[Path], count: int) -> str:
    names = ", ".join(path.name for path in files)
    return (
        f"{task}: held-out test split of {names} (as configs/pipelines/{task}_head.yaml "
        f"splits it); {count} texts"
    )


def _main_classifier(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.checkpoint is None:
        parser.error("--model classifier needs --checkpoint, a local save_pretrained directory")
    task = args.task or infer_task(args.checkpoint)
    files = args.gate_data or list(DEFAULT_GATE_DATA[task])
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        parser.error(
            f"gate data file(s) {missing} do not exist; pass --gate-data with a Davidson .csv "
            "(moderation) or a VADER *_GroundTruth.txt (sentiment), see ../shared/data/README.md"
        )
    rows = held_out_gate_rows(task, files, args.gate_max_texts)
    description = _gate_data_description(task, files, len(rows))
    if args.gate_reference:
        description += "; truth: fp32's own decisions (score > 0.5)"
    logger.info(
        "exporting %s classifier %s (%s) to %s; gate: %s",
        task,
        args.checkpoint,
        "int8 per-channel" if args.quantize else "fp32",
        args.out,
        description,
    )
    report = export_and_gate_classifier(
        args.checkpoint,
        args.out,
        rows.texts,
        args.quantize,
        task=task,
        classes=None if args.gate_reference else rows.classes,
        keep_ffn_output_fp32=not args.quantize_ffn_output,
        max_length=args.max_length,
        stride=args.stride,
        max_auc_drop=args.max_auc_drop,
        min_texts=args.min_texts,
        name=args.name,
        sample=description,
    )
    return _finish(report, f"largest AUC drop {report.max_auc_drop:.4f}")


def _finish(report: GateReport | ClassifierGateReport, summary: str) -> int:
    sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    if not report.servable:
        logger.error("gate FAILED, artifact not servable: %s", "; ".join(report.reasons))
        return 2
    logger.info("gate passed: %s", summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=_MODELS, required=True, help="what to export")
    parser.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    parser.add_argument("--quantize", action="store_true", help="dynamic int8, per channel")
    parser.add_argument(
        "--quantize-ffn-output",
        action="store_true",
        help="with --quantize: quantise the feed-forward output MatMuls too (faster, but "
        "MiniLM then fails the default gate: mean cosine ~0.989)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="minilm: default the bundled all-MiniLM-L6-v2; classifier: required",
    )
    parser.add_argument(
        "--sample",
        type=Path,
        action="append",
        default=None,
        help="minilm gate texts: a Davidson .csv or a VADER *_GroundTruth.txt (repeatable); "
        "default: the two files under ../shared/data",
    )
    parser.add_argument("--per-file", type=int, default=200, help="minilm: texts per file")
    parser.add_argument("--seed", type=int, default=0, help="minilm sample seed")
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens per text (minilm: 256; classifier: the model's limit, as served)",
    )
    parser.add_argument("--min-mean-cosine", type=float, default=DEFAULT_MIN_MEAN_COSINE)
    parser.add_argument("--min-text-cosine", type=float, default=DEFAULT_MIN_TEXT_COSINE)
    parser.add_argument(
        "--task",
        choices=_TASKS,
        default=None,
        help="classifier: moderation (sigmoid per label, max over windows) or sentiment "
        "(softmax, mean); default: sentiment when id2label names positive/negative",
    )
    parser.add_argument(
        "--gate-data",
        type=Path,
        nargs="+",
        default=None,
        help="classifier: labelled files whose held-out test split is the gate sample "
        "(moderation: Davidson .csv; sentiment: VADER *_GroundTruth.txt); default per task",
    )
    parser.add_argument(
        "--gate-reference",
        action="store_true",
        help="classifier: truth = fp32's own decisions (score > 0.5), for checkpoints whose "
        "labels no data set here fits; the gate then measures agreement with fp32",
    )
    parser.add_argument(
        "--stride", type=int, default=64, help="classifier: tokens shared by windows, as served"
    )
    parser.add_argument("--gate-max-texts", type=int, default=1000, help="classifier sample cap")
    parser.add_argument("--max-auc-drop", type=float, default=DEFAULT_MAX_AUC_DROP)
    parser.add_argument("--min-texts", type=int, default=200, help="smallest gate sample")
    parser.add_argument("--name", default=None, help="reported model name (classifier)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.model == "classifier":
        return _main_classifier(parser, args)

    files = args.sample or list(DEFAULT_SAMPLE_FILES)
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        parser.error(
            f"gate sample file(s) {missing} do not exist; pass --sample with a Davidson .csv "
            "or a VADER *_GroundTruth.txt (see ../shared/data/README.md)"
        )
    texts = gate_sample(files, args.per_file, args.seed)
    checkpoint = args.checkpoint or default_model_dir()
    logger.info(
        "exporting %s (%s) to %s on a gate sample of %d texts",
        args.model,
        "int8 per-channel" if args.quantize else "fp32",
        args.out,
        len(texts),
    )
    report = export_and_gate(
        checkpoint,
        args.out,
        texts,
        args.quantize,
        keep_ffn_output_fp32=not args.quantize_ffn_output,
        max_length=args.max_length or 256,
        min_mean_cosine=args.min_mean_cosine,
        min_text_cosine=args.min_text_cosine,
        min_texts=args.min_texts,
    )
    return _finish(report, f"mean cosine {report.mean_cosine:.4f}, lowest {report.min_cosine:.4f}")


if __name__ == "__main__":
    sys.exit(main())
