"""Ray Data batch inference: re-embed stored posts and rescore the moderation backlog.

    python -m pipelines.batch_inference --config configs/pipelines/batch_inference.yaml

Posts (JSONL: post_id, text) flow through ``map_batches`` into a pool of model actors
(``concurrency`` actors, each loading MiniLM and the moderation head once), and the results are
appended to the output JSONL batch by batch. The output is also the progress record: a rerun
reads the post ids already in it and skips them, so a killed job resumes where it stopped and
finished posts are never scored twice. A post's text never reaches the output or the logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

from configs.nodes import RegisteredModelRef
from configs.pipelines import BatchInferenceJobConfig, load_batch_job_config
from models.embeddings import EMBEDDING_DIM
from models.heads import load_head, shared_embedder
from pipelines.jobs import read_jsonl, run_cli, say
from storage.registry import fetch_registered_head

__all__ = ["PostScorer", "done_ids", "main", "read_posts", "run_job"]

logger = logging.getLogger("pipelines.batch_inference")


def done_ids(output_path: Path) -> set[str]:
    """Post ids already in the output (the progress record); a torn last line is ignored."""
    if not output_path.is_file():
        return set()
    done: set[str] = set()
    with output_path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                done.add(str(json.loads(line)["post_id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                # A run killed mid-write leaves half a line: that post is simply redone.
                continue
    return done


def _post(row: Any) -> dict[str, str]:
    return {"post_id": str(row["post_id"]), "text": str(row.get("text") or "")}


def read_posts(input_path: Path, skip: set[str]) -> list[dict[str, str]]:
    """``{post_id, text}`` rows not in `skip`, first occurrence of each id.

    Raises:
        ValueError: The file is missing or a line is not a post (named by line number).
    """
    if not input_path.is_file():
        raise ValueError(
            f"posts file {str(input_path)!r} does not exist; export the posts (JSONL with "
            "post_id and text) or fix input_path"
        )
    rows: list[dict[str, str]] = []
    seen = set(skip)
    posts = read_jsonl(input_path, _post, "a post", "a JSON object with post_id and text")
    for post in posts:
        if post["post_id"] not in seen:
            seen.add(post["post_id"])
            rows.append(post)
    return rows


class PostScorer:
    """A Ray Data actor: MiniLM and (optionally) a moderation head, loaded once per actor."""

    def __init__(self, embed: bool, head_dir: str | None, head_version: str | None) -> None:
        self.embed = embed
        self.embedder = shared_embedder("auto")
        self.head = load_head(head_dir) if head_dir else None
        self.head_version = head_version or (self.head.version if self.head else None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        post_ids = [str(p) for p in batch["post_id"]]
        texts = [str(t) for t in batch["text"]]
        vectors = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        has_text = [i for i, text in enumerate(texts) if text.strip()]
        if has_text:
            vectors[has_text] = self.embedder.embed([texts[i] for i in has_text])
        rows: list[dict[str, Any]] = []
        scores = None
        if self.head is not None and has_text:
            # The head builds its own inputs (MiniLM vector plus its checkpoint's features).
            scores = self.head.probabilities(texts, vectors)
        for i, post_id in enumerate(post_ids):
            row: dict[str, Any] = {"post_id": post_id, "has_text": i in has_text}
            if self.embed:
                row["embedding"] = vectors[i].tolist() if i in has_text else None
                row["embedder_version"] = self.embedder.info.version
            if self.head is not None:
                row["moderation"] = (
                    dict(zip(self.head.config.labels, map(float, scores[i]), strict=True))
                    if scores is not None and i in has_text
                    else None
                )
                row["moderation_version"] = self.head_version
            rows.append(row)
        # One JSON string per row: Ray Data columns stay simple whatever the fields are.
        return {"post_id": np.array(post_ids), "result": np.array([json.dumps(r) for r in rows])}


def _head(config: BatchInferenceJobConfig) -> tuple[str | None, str | None]:
    if config.moderation_head_path:
        return str(Path(config.moderation_head_path).resolve()), None
    if config.moderation_model_name:
        ref = RegisteredModelRef(
            model_name=config.moderation_model_name,
            alias=config.moderation_alias,
            tracking_uri=config.tracking_uri,
        )
        head_dir, name, version = fetch_registered_head(ref)
        return str(head_dir), f"{name}/{version}"
    return None, None


def run_job(config: BatchInferenceJobConfig) -> dict[str, Any]:
    """Score every post not yet in the output; returns counts (see the module docstring)."""
    output = Path(config.output_path)
    already = done_ids(output)
    rows = read_posts(Path(config.input_path), already)
    if config.max_rows is not None:
        rows = rows[: config.max_rows]
    say(f"batch inference: {len(already)} posts already done, {len(rows)} to score")
    if not rows:
        return {"already_done": len(already), "processed": 0}
    head_dir, head_version = _head(config)  # before any actor starts: a bad ref fails fast
    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    started_s = time.monotonic()
    dataset = ray.data.from_items(rows).map_batches(
        PostScorer,
        fn_constructor_kwargs={
            "embed": config.embed,
            "head_dir": head_dir,
            "head_version": head_version,
        },
        concurrency=config.concurrency,
        batch_size=config.batch_size,
        num_cpus=config.cpus_per_actor,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    processed = 0
    with output.open("a", encoding="utf-8") as out:
        for batch in dataset.iter_batches(batch_size=config.batch_size, batch_format="numpy"):
            out.writelines(f"{line}\n" for line in batch["result"])
            # Flushed per batch: what is on disk is done, whatever happens next.
            out.flush()
            processed += len(batch["result"])
            say(f"batch inference: {processed}/{len(rows)} posts")
    elapsed_s = time.monotonic() - started_s
    say(f"batch inference: {processed} posts in {elapsed_s:.1f} s")
    return {"already_done": len(already), "processed": processed, "elapsed_s": elapsed_s}


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m pipelines.batch_inference --config <job YAML>``."""
    return run_cli(
        __doc__.split("\n\n")[0],
        argv,
        lambda config_path: run_job(load_batch_job_config(config_path)),
        user_errors=(ValueError, LookupError),
        indent=None,
    )


if __name__ == "__main__":
    sys.exit(main())
