"""The offline ceiling: the model called directly in one process, at several batch sizes.

Run as a child process (so the benchmark driver never holds a model or torch's threads):

    python -m bench.offline measure --kind transformer --path DIR --bodies FILE \\
        --batch-sizes 1,8,16,32,64 --budget-s 3
    python -m bench.offline measure --kind transformer-onnx --path ARTIFACT --bodies FILE
    python -m bench.offline build-checkpoint DIR

``measure`` prints one JSON line: texts/s and seconds per batch for each batch size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

# At least this many timed batches per batch size, whatever the time budget.
MIN_TIMED_BATCHES = 2
# Hard cap on timed batches per batch size, so a very fast model cannot loop for long.
MAX_TIMED_BATCHES = 100_000


def _read_texts(bodies_file: Path) -> list[str]:
    lines = bodies_file.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def _load_model(kind: str, path: str | None) -> Any:
    """A moderation model, or the sentence encoder: ``minilm`` (torch) / ``minilm-onnx``.

    ``transformer-onnx``: the transformer moderator on a gated classifier artifact (`path`,
    from ``python -m pipelines.export_onnx --model classifier``).
    """
    if kind == "minilm":
        from models.embeddings import MiniLMEmbedder

        return MiniLMEmbedder.load(path, "cpu")
    if kind == "minilm-onnx":
        from models.embeddings import load_embedder

        # `path`: a gated artifact from `python -m pipelines.export_onnx` (refused otherwise).
        return load_embedder("onnx", onnx_path=path)
    from models.text_classifier import load_text_classifier

    if kind == "transformer-onnx":
        return load_text_classifier(
            "moderation", "transformer", None, "cpu", backend="onnx", onnx_path=path
        )
    return load_text_classifier("moderation", kind, path, "cpu")


def measure(
    kind: str, path: str | None, texts: list[str], batch_sizes: list[int], budget_s: float
) -> dict[str, object]:
    """Time `predict_batch` for each batch size for about `budget_s`, after one warm-up call."""
    import torch

    load_started = time.perf_counter()
    model = _load_model(kind, path)
    load_s = time.perf_counter() - load_started
    results = []
    cursor = 0
    for batch_size in batch_sizes:

        def next_batch(size: int = batch_size) -> list[str]:
            nonlocal cursor
            batch = [texts[(cursor + i) % len(texts)] for i in range(size)]
            cursor = (cursor + size) % len(texts)
            return batch

        model.predict_batch(next_batch())  # warm-up: allocator, kernels, caches
        timed_batches = 0
        started = time.perf_counter()
        elapsed_s = 0.0
        while timed_batches < MAX_TIMED_BATCHES and (
            timed_batches < MIN_TIMED_BATCHES or elapsed_s < budget_s
        ):
            model.predict_batch(next_batch())
            timed_batches += 1
            elapsed_s = time.perf_counter() - started
        results.append(
            {
                "batch_size": batch_size,
                "batches": timed_batches,
                "texts_per_s": timed_batches * batch_size / elapsed_s,
                "batch_ms": 1000.0 * elapsed_s / timed_batches,
            }
        )
    best = max(results, key=lambda r: float(r["texts_per_s"]))  # type: ignore[arg-type]
    return {
        "kind": kind,
        "model": model.info.as_dict(),
        "torch_threads": torch.get_num_threads(),
        "load_s": load_s,
        "by_batch_size": results,
        "best": best,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-checkpoint", help="random bert-base-sized checkpoint")
    build.add_argument("path", type=Path)
    run = commands.add_parser("measure", help="time the model at several batch sizes")
    run.add_argument(
        "--kind",
        choices=("profanity", "transformer", "transformer-onnx", "minilm", "minilm-onnx"),
        required=True,
    )
    run.add_argument("--path", default=None)
    run.add_argument("--bodies", type=Path, required=True, help="JSON-lines request bodies")
    run.add_argument("--batch-sizes", default="1,8,16,32,64")
    run.add_argument("--budget-s", type=float, default=3.0, help="timing budget per batch size")
    args = parser.parse_args(argv)

    if args.command == "build-checkpoint":
        from bench.checkpoint import build_checkpoint

        sys.stdout.write(json.dumps(build_checkpoint(args.path)) + "\n")
        return 0
    batch_sizes = [int(size) for size in args.batch_sizes.split(",") if size.strip()]
    if not batch_sizes or min(batch_sizes) < 1:
        parser.error("--batch-sizes needs positive integers, e.g. 1,8,16")
    texts = _read_texts(args.bodies)
    result = measure(args.kind, args.path, texts, batch_sizes, args.budget_s)
    if args.kind == "transformer" and args.path:
        from bench.checkpoint import mean_tokens_per_text

        result["mean_tokens_per_text"] = mean_tokens_per_text(Path(args.path), texts)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
