"""BentoML peer: the same all-MiniLM-L6-v2 embedding behind BentoML's adaptive batching.

    python -m bench.bentoml_runner setup     # build bench/.venv-bentoml (once, ~1 min)

Used by ``python -m bench.embed_bench --setups bentoml``. BentoML lives in its own git-ignored
virtualenv (``bench/.venv-bentoml``): torch 2.13.0 first (the local CPU wheel, so pip never
resolves another torch), then ``bentoml`` and the project's transformers version.

The service does what ``models.embeddings.MiniLMEmbedder`` does (tokenise, encoder, masked
mean pooling, L2 normalisation) on the batches BentoML's dispatcher assembles (one worker,
2 torch threads, ``max_batch_size`` 32). A batchable BentoML API takes a list per request,
so wrk posts ``{"texts": [post]}`` bodies (one post each) to ``/embed``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.servers import (
    PEER_TORCH_VERSION,
    REPO_ROOT,
    ProbedServer,
    Server,
    build_peer_venv,
    peer_env,
)

VENV_DIR = REPO_ROOT / "bench" / ".venv-bentoml"
ROUTE = "/embed"
TORCH_VERSION = PEER_TORCH_VERSION

SERVICE_SOURCE = '''\
"""MiniLM sentence embeddings for BentoML (written by bench/bentoml_runner.py)."""
import os

import bentoml
import torch
from transformers import AutoModel, AutoTokenizer

MAX_BATCH_SIZE = int(os.environ.get("BENCH_MAX_BATCH_SIZE", "32"))
MAX_LATENCY_MS = int(os.environ.get("BENCH_MAX_LATENCY_MS", "10000"))


@bentoml.service(workers=1, traffic={"timeout": 60, "max_concurrency": 1024})
class MiniLM:
    def __init__(self) -> None:
        # The same thread count as the offline ceiling, TorchServe's worker and our replica.
        torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))
        model_dir = os.environ["BENCH_CHECKPOINT"]
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def embed(self, texts: list[str]) -> list[list[float]]:
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=256, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self.model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).tolist()
'''


def _log(message: str) -> None:
    print(f"[bentoml {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def venv_bin(name: str) -> Path:
    """A program installed in the BentoML virtualenv."""
    return VENV_DIR / "bin" / name


def ensure_venv() -> Path:
    """Create ``bench/.venv-bentoml`` unless it already has BentoML; returns its python.

    Raises:
        RuntimeError: venv creation or an install failed.
    """
    marker = VENV_DIR / "bench-ready.json"
    if marker.is_file() and venv_bin("bentoml").is_file():
        return venv_bin("python")
    from importlib import metadata

    packages = ["bentoml", f"transformers=={metadata.version('transformers')}"]
    build_peer_venv(VENV_DIR, "BentoML", packages)
    version = subprocess.run(
        [str(venv_bin("python")), "-c", "import bentoml; print(bentoml.__version__)"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip()  # fmt: skip
    marker.write_text(json.dumps({"torch": TORCH_VERSION, "bentoml": version}), encoding="utf-8")
    return venv_bin("python")


def installed_version() -> str:
    """The BentoML version in the bench venv ("unknown" before setup)."""
    try:
        marker = json.loads((VENV_DIR / "bench-ready.json").read_text(encoding="utf-8"))
        return str(marker.get("bentoml", "unknown"))
    except (OSError, ValueError):
        return "unknown"


class BentoMLServer(ProbedServer):
    """``bentoml serve`` in the foreground; ready when a real embedding answers 200."""

    probe_route = ROUTE
    probe_body = {"texts": ["warm-up post"]}

    def probe_ok(self, answer: Any) -> bool:
        """A real embedding: a list holding one 384-float vector."""
        return isinstance(answer, list) and bool(answer) and len(answer[0]) == 384


def bentoml_server(
    work_dir: Path,
    port: int,
    checkpoint: Path | None = None,
    max_batch_size: int = 32,
    torch_threads: int = 2,
    ready_timeout_s: float = 240.0,
) -> Server:
    """A ready-to-start BentoML `Server` serving MiniLM embeddings on `port`."""
    if checkpoint is None:
        from models.embeddings import default_model_dir

        checkpoint = default_model_dir()
    ensure_venv()
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "service.py").write_text(SERVICE_SOURCE, encoding="utf-8")
    env = peer_env(
        VENV_DIR,
        BENCH_CHECKPOINT=str(checkpoint),
        BENCH_TORCH_THREADS=str(torch_threads),
        BENCH_MAX_BATCH_SIZE=str(max_batch_size),
        # BentoML keeps its model store and logs under BENTOML_HOME; keep them in the run.
        BENTOML_HOME=str(work_dir / "bentoml-home"),
        BENTOML_DO_NOT_TRACK="true",
    )
    command = [
        str(venv_bin("bentoml")), "serve", "service:MiniLM",
        "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(work_dir),
    ]  # fmt: skip
    return BentoMLServer(
        "bentoml", command, port, env, work_dir / "bentoml.log", ready_timeout_s, work_dir
    )


def main(argv: list[str] | None = None) -> int:
    """``setup``: build the venv and print its python."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="create bench/.venv-bentoml")
    parser.parse_args(argv)
    print(ensure_venv())
    return 0


if __name__ == "__main__":
    sys.exit(main())
