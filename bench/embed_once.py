"""Embed once: what sharing one post's MiniLM vector across text features saves (no Ray).

Run:
    .venv/bin/python -m bench.embed_once                    # 300 posts, batches of 16
    .venv/bin/python -m bench.embed_once --posts 100 --out /tmp/embed_once.json

Each post arrives once and goes through every feature that embeds its text, in the order the
service meets them: the moderation head, the sentiment head (tiny random heads of the real
classes: the encoder is the cost, not the head), smart replies (the message embed of
`models.reply_model.ReplyModel`) and the recommender's ingest (`Embedder.predict_batch`).

* ``separate`` (today): each feature runs its own encoder on the text.
* ``shared`` (embed once): each feature has its own `CachingEmbedder`, as each node does,
  over ONE store (the in-process LRU here, standing for the Redis store the nodes share).

Both use the same loaded all-MiniLM-L6-v2 on CPU; "encoder seconds" is time inside its
``embed``, "wall seconds" the whole pass. The head scores of both passes are compared, so a
cache that changed answers would show. Posts are never printed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.posts import generate_posts
from models.device import ModelInfo
from models.embeddings import MiniLMEmbedder
from models.heads import (
    MODERATION_HEAD_LABELS,
    SENTIMENT_HEAD_LABELS,
    HeadConfig,
    HeadModerator,
    HeadSentiment,
    TextHead,
    save_head,
)
from models.text_vectors import CachingEmbedder, LocalVectorStore, TextEncoder

DEFAULT_POSTS = 300
DEFAULT_BATCH = 16
DEFAULT_OUT = Path("bench/results/embed_once.json")
FEATURES = ("moderation_head", "sentiment_head", "replies", "recommender_ingest")


class TimedEncoder:
    """The real encoder, timed and counted (what each feature's node would run)."""

    def __init__(self, encoder: MiniLMEmbedder) -> None:
        self._encoder = encoder
        self.max_length = encoder.max_length
        self.texts = 0
        self.seconds = 0.0

    @property
    def info(self) -> ModelInfo:
        """The wrapped encoder's identity (so cache keys match the real one's)."""
        return self._encoder.info

    def embed(self, texts: list[str]) -> np.ndarray:
        """The encoder's vectors; adds the texts and the time spent."""
        started = time.perf_counter()
        vectors = self._encoder.embed(texts)
        self.seconds += time.perf_counter() - started
        self.texts += len(texts)
        return vectors


def _heads(directory: Path) -> tuple[Path, Path]:
    """Tiny random moderation and sentiment heads in the real checkpoint format."""
    torch.manual_seed(0)
    moderation = TextHead(HeadConfig(task="moderation", labels=MODERATION_HEAD_LABELS))
    sentiment = TextHead(HeadConfig(task="sentiment", labels=SENTIMENT_HEAD_LABELS))
    return (
        save_head(directory / "moderation", moderation, version="bench"),
        save_head(directory / "sentiment", sentiment, version="bench"),
    )


def run_pass(
    posts: list[str],
    batch_size: int,
    head_dirs: tuple[Path, Path],
    encoder_for: Callable[[], TextEncoder],
) -> tuple[dict[str, Any], list[Any]]:
    """Every batch of posts through every feature; `encoder_for()` gives each its encoder."""
    encoders = {name: encoder_for() for name in FEATURES}
    moderation = HeadModerator.load(head_dirs[0], "cpu", embedder=encoders["moderation_head"])
    sentiment = HeadSentiment.load(head_dirs[1], "cpu", embedder=encoders["sentiment_head"])
    scores: list[Any] = []
    started = time.perf_counter()
    for start in range(0, len(posts), batch_size):
        batch = posts[start : start + batch_size]
        scores.extend(moderation.predict_batch(batch))
        scores.extend(sentiment.predict_batch(batch))
        encoders["replies"].embed(batch)  # ReplyModel.predict_batch: one embed per batch
        ingest = encoders["recommender_ingest"]
        # The Embedder node calls predict_batch; a raw encoder is asked through embed.
        if isinstance(ingest, CachingEmbedder):
            ingest.predict_batch(batch)
        else:
            _ = [row.tolist() for row in ingest.embed(batch)]
    wall_s = time.perf_counter() - started
    return {"wall_s": round(wall_s, 3)}, scores


def main(argv: list[str] | None = None) -> int:
    """Run both passes, print the comparison and write it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--posts", type=int, default=DEFAULT_POSTS, help="posts that arrive")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="posts per node batch")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result file")
    args = parser.parse_args(argv)

    posts = generate_posts(args.posts)
    minilm = MiniLMEmbedder.load(device="cpu")
    minilm.embed(posts[:8])  # warm-up: first-call allocations are not the feature's cost

    with tempfile.TemporaryDirectory() as tmp:
        head_dirs = _heads(Path(tmp))

        separate_encoders: list[TimedEncoder] = []

        def separate_encoder() -> TextEncoder:
            encoder = TimedEncoder(minilm)
            separate_encoders.append(encoder)
            return encoder

        separate, separate_scores = run_pass(posts, args.batch, head_dirs, separate_encoder)
        separate.update(
            texts_encoded=sum(e.texts for e in separate_encoders),
            encoder_s=round(sum(e.seconds for e in separate_encoders), 3),
        )

        shared_raw = TimedEncoder(minilm)
        store = LocalVectorStore(max_entries=100_000)
        caching: list[CachingEmbedder] = []

        def shared_encoder() -> TextEncoder:
            embedder = CachingEmbedder(shared_raw, store)
            caching.append(embedder)
            return embedder

        shared, shared_scores = run_pass(posts, args.batch, head_dirs, shared_encoder)
        shared.update(
            texts_encoded=shared_raw.texts,
            encoder_s=round(shared_raw.seconds, 3),
            store_hits=sum(c.hits for c in caching),
            store_entries=len(store),
        )

    result = {
        "benchmark": "embed_once",
        "posts": len(posts),
        "batch_size": args.batch,
        "features": list(FEATURES),
        "separate": separate,
        "shared": shared,
        "ratio_separate_over_shared": {
            key: round(separate[key] / shared[key], 2) if shared[key] else None
            for key in ("texts_encoded", "encoder_s", "wall_s")
        },
        "head_scores_identical": separate_scores == shared_scores,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    text = json.dumps(result, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")
    return 0 if result["head_scores_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
