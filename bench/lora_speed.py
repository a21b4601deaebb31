"""Serving speed of a LoRA fine-tuned MiniLM (`models.lora_text`) against the frozen MiniLM
embed + head path (`models.heads`), both called directly in one process (no Ray).

Run:
    .venv/bin/python -m bench.lora_speed --artifact DIR [--rounds 5] [--threads 1]

The frozen side is a `HeadModerator` / `HeadSentiment` with a random head of the shipped
shape (the encoder is the cost, not the head) over `MiniLMEmbedder` at its serving default
(256 tokens) and at the LoRA model's `max_length`; the LoRA side is `LoraModerator` /
`LoraSentiment` from the artifact (adapters merged at load). Each round times every model on
the same batches of 32 synthetic posts (`bench.posts`), in turn, so load from other processes
hits all of them alike; the median round is printed as one JSON object. Posts are never printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.posts import generate_posts
from models.embeddings import MiniLMEmbedder
from models.heads import (
    MODERATION_HEAD_LABELS,
    SENTIMENT_HEAD_LABELS,
    HeadConfig,
    HeadModerator,
    HeadSentiment,
    TextHead,
    feature_dim,
    load_head,
    save_head,
)
from models.lora_text import LoraModerator, LoraSentiment, load_lora_model

BATCH = 32


def _frozen(task: str, features: tuple[str, ...], max_length: int, tmp: Path) -> Any:
    labels = MODERATION_HEAD_LABELS if task == "moderation" else SENTIMENT_HEAD_LABELS
    config = HeadConfig(
        task=task,  # type: ignore[arg-type]
        labels=labels,
        input_dim=feature_dim(features),
        features=features,
    )
    directory = save_head(tmp / f"{task}-{max_length}", TextHead(config))
    embedder = MiniLMEmbedder.load(device="cpu", max_length=max_length)
    cls = HeadModerator if task == "moderation" else HeadSentiment
    return cls(load_head(directory), embedder)


def measure(artifact: Path, rounds: int, threads: int, posts: int) -> dict[str, Any]:
    """Median texts/s of each model over `rounds` rounds of `posts` posts in batches of 32."""
    torch.set_num_threads(threads)
    texts = generate_posts(posts)
    _, model, _ = load_lora_model(artifact)
    task, max_length = model.config.task, model.config.max_length
    lora_cls = LoraModerator if task == "moderation" else LoraSentiment
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            f"lora (max_length {max_length})": lora_cls.load(artifact, device="cpu"),
            "frozen MiniLM + head (max_length 256)": _frozen(
                task, model.config.features, 256, Path(tmp)
            ),
            f"frozen MiniLM + head (max_length {max_length})": _frozen(
                task, model.config.features, max_length, Path(tmp)
            ),
        }
        for candidate in models.values():  # warm-up
            candidate.predict_batch(texts[:BATCH])
        rates: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(rounds):
            for name, candidate in models.items():
                started_s = time.perf_counter()
                for start in range(0, len(texts), BATCH):
                    candidate.predict_batch(texts[start : start + BATCH])
                rates[name].append(len(texts) / (time.perf_counter() - started_s))
    return {
        "task": task,
        "threads": threads,
        "batch": BATCH,
        "posts_per_round": len(texts),
        "rounds": rounds,
        "texts_per_s_median": {name: round(statistics.median(v), 1) for name, v in rates.items()},
        "texts_per_s_all": {name: [round(x, 1) for x in v] for name, v in rates.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", type=Path, required=True, help="models.lora_text artifact")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per model")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--posts", type=int, default=320, help="posts per round")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.artifact, args.rounds, args.threads, args.posts), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
