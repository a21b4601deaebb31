"""Export the sentence encoder to ONNX (optionally int8) and run the accuracy gate on it.

    python -m pipelines.export_onnx --model minilm --out artifacts/minilm-onnx
    python -m pipelines.export_onnx --model minilm --out artifacts/minilm-int8 --quantize

Writes ``model.onnx``, the tokenizer files and ``gate.json`` into ``--out``. The gate embeds a
fixed, seeded sample of texts (default: 200 tweets from each of the two public sets under
``../shared/data``; see its README) with the fp32 torch model and with the exported one, and
marks the artifact servable only when the mean cosine is at least ``--min-mean-cosine`` and
no text is below ``--min-text-cosine``. The Embedder node (``backend: onnx``) refuses an
artifact whose report is missing or failed. Exit code 0: servable; 2: the gate failed (the
artifact stays on disk with its failing report, for inspection). No text is printed or stored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from models.embeddings import MiniLMEmbedder, default_model_dir
from models.onnx_backend import (
    DEFAULT_MIN_MEAN_COSINE,
    DEFAULT_MIN_TEXT_COSINE,
    GATE_FILE,
    MODEL_FILE,
    GateReport,
    OnnxEmbedder,
    copy_tokenizer,
    evaluate_gate,
    export_sentence_encoder,
    quantize_int8,
    source_identity,
    write_gate_report,
)
from pipelines.data import read_davidson_csv, read_vader_ground_truth

__all__ = ["DEFAULT_SAMPLE_FILES", "export_and_gate", "gate_sample", "main"]

logger = logging.getLogger("pipelines.export_onnx")

_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Two registers of short social text: rated tweets and (offensive-heavy) tweets.
DEFAULT_SAMPLE_FILES = (
    _SHARED_DATA / "sentiment" / "tweets_GroundTruth.txt",
    _SHARED_DATA / "toxicity" / "davidson_train.csv",
)
_MODELS = ("minilm",)
# Texts embedded per call while gating: enough to be quick, small enough for little memory.
_GATE_BATCH = 64


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
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = None
    if quantize:
        with tempfile.TemporaryDirectory(prefix="export-fp32-") as scratch:
            fp32_path = export_sentence_encoder(checkpoint, scratch)
            # The fp32 export lives only in scratch: the artifact holds the int8 model.
            (out_dir / GATE_FILE).unlink(missing_ok=True)
            recipe = quantize_int8(fp32_path, out_dir / MODEL_FILE, keep_ffn_output_fp32)
            copy_tokenizer(scratch, out_dir)
    else:
        export_sentence_encoder(checkpoint, out_dir)
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


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=_MODELS, required=True, help="which encoder")
    parser.add_argument("--out", type=Path, required=True, help="artifact directory to write")
    parser.add_argument("--quantize", action="store_true", help="dynamic int8, per channel")
    parser.add_argument(
        "--quantize-ffn-output",
        action="store_true",
        help="with --quantize: quantise the feed-forward output MatMuls too (faster, but "
        "MiniLM then fails the default gate: mean cosine ~0.989)",
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="default: the bundled all-MiniLM-L6-v2"
    )
    parser.add_argument(
        "--sample",
        type=Path,
        action="append",
        default=None,
        help="gate texts: a Davidson .csv or a VADER *_GroundTruth.txt (repeatable); "
        "default: the two files under ../shared/data",
    )
    parser.add_argument("--per-file", type=int, default=200, help="texts drawn from each file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, default=256, help="tokens per text")
    parser.add_argument("--min-mean-cosine", type=float, default=DEFAULT_MIN_MEAN_COSINE)
    parser.add_argument("--min-text-cosine", type=float, default=DEFAULT_MIN_TEXT_COSINE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

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
        max_length=args.max_length,
        min_mean_cosine=args.min_mean_cosine,
        min_text_cosine=args.min_text_cosine,
    )
    sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    if not report.servable:
        logger.error("gate FAILED, artifact not servable: %s", "; ".join(report.reasons))
        return 2
    logger.info("gate passed: mean cosine %.4f, lowest %.4f", report.mean_cosine, report.min_cosine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
