"""Fine-tune all-MiniLM-L6-v2 with LoRA adapters and a head (moderation or sentiment) with
Ray Train on CPU, then evaluate on held-out rows and log to MLflow.

    python -m pipelines.finetune_text --config configs/pipelines/finetune_moderation.yaml

Steps, in order:
1. read the job config (`configs.pipelines.FinetuneTextJobConfig`);
2. read and check every data file (`pipelines.data`), split the rows exactly as
   `pipelines.text_heads` does (same seed and fractions = same held-out test rows), read the
   cross-domain files (scored at the end only);
3. tokenise once; train with a `TorchTrainer` (1 worker by default): AdamW, linear warm-up
   and decay, length-bucketed batches, validation every ``eval_every_steps`` steps, early
   stopping, a `ray.train.Checkpoint` (the small artifact) on every improvement;
4. score the best model on the test split and the cross-domain files; write the report;
5. log params, metrics, report and artifact to MLflow (no registration, no promotion).

The training loop itself (`fit_lora`) needs no Ray: tests and quick experiments call it
directly. Row text is never logged or reported.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import ray
import ray.train
import torch

from configs.pipelines import FinetuneTextJobConfig, load_finetune_job_config
from models.device import checkpoint_version
from models.embeddings import default_model_dir
from models.heads import DAVIDSON_HATE, DAVIDSON_NEITHER, SENTIMENT_HEAD_LABELS
from models.lora_text import (
    LoraModerator,
    LoraSentiment,
    LoraTextClassifier,
    LoraTextConfig,
    LoraTextModel,
    build_model,
    extra_features,
    load_lora_model,
    save_lora_model,
    trainable_state,
)
from pipelines.data import LabelledTexts, Split, load_labelled, stratified_split
from pipelines.evaluation import auc, task_metrics
from pipelines.jobs import job_dir, new_run_name, run_cli, say, write_json_report
from pipelines.ray_train import fit_and_load, write_history
from pipelines.registry import open_tracking

__all__ = [
    "FitResult",
    "TokenisedRows",
    "fit_lora",
    "lora_config_for",
    "main",
    "positive_vs_negative_auc",
    "run_job",
    "score_rows",
]

logger = logging.getLogger("pipelines.finetune_text")

# Batches are length-sorted within pools of this many batches: little padding, still shuffled.
_POOL_BATCHES = 50


@dataclass(frozen=True)
class TokenisedRows:
    """Token ids (unpadded, truncated), extra head features, targets and classes of rows."""

    ids: list[list[int]]
    extra: np.ndarray
    targets: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class FitResult:
    """Best trainable state, its validation score and step, and the evaluation history."""

    state: dict[str, torch.Tensor]
    best_score: float
    best_step: int
    history: list[dict[str, float]]


def lora_config_for(config: FinetuneTextJobConfig, labels: tuple[str, ...]) -> LoraTextConfig:
    """The model config a job trains (the base version is the package's checkpoint)."""
    return LoraTextConfig(
        task=config.task,
        labels=labels,
        rank=config.lora_rank,
        alpha=config.lora_alpha,
        targets=tuple(config.lora_targets),
        layers=tuple(config.lora_layers),
        train_layer_norms=config.train_layer_norms,
        features=tuple(config.features),
        hidden_dim=config.hidden_dim,
        dropout=config.dropout,
        max_length=config.max_length,
        base_version=checkpoint_version(default_model_dir()),
        name=config.mlflow.registered_model_name,
    )


def tokenise(tokenizer: Any, model_config: LoraTextConfig, data: LabelledTexts) -> TokenisedRows:
    """Tokenise `data` once (truncated to max_length) and build its extra head features."""
    encoded = tokenizer(data.texts, truncation=True, max_length=model_config.max_length)
    extra = extra_features(model_config, data.texts, None)
    return TokenisedRows(list(encoded["input_ids"]), extra, data.targets, data.classes)


def _pad(ids: list[list[int]], rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids[i]) for i in rows)
    input_ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for position, row in enumerate(rows):
        length = len(ids[row])
        input_ids[position, :length] = torch.tensor(ids[row])
        mask[position, :length] = 1
    return input_ids, mask


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    pool = batch_size * _POOL_BATCHES
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def score_rows(model: LoraTextModel, rows: TokenisedRows, batch_size: int = 64) -> np.ndarray:
    """Probabilities ``(n, labels)`` for tokenised rows (eval mode, length-sorted batches)."""
    was_training = model.training
    model.eval()
    lengths = np.array([len(ids) for ids in rows.ids])
    order = np.argsort(lengths, kind="stable")
    result = np.zeros((len(rows), len(model.config.labels)), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            input_ids, mask = _pad(rows.ids, batch)
            extra = torch.from_numpy(rows.extra[batch])
            logits = model(input_ids, mask, extra)
            result[batch] = model.probabilities(logits).numpy()
    model.train(was_training)
    return result


def positive_vs_negative_auc(probabilities: np.ndarray, classes: np.ndarray) -> float:
    """AUC of p(positive) - p(negative) on the rows labelled positive or negative."""
    positive = SENTIMENT_HEAD_LABELS.index("positive")
    negative = SENTIMENT_HEAD_LABELS.index("negative")
    keep = (classes == positive) | (classes == negative)
    score = probabilities[keep, positive] - probabilities[keep, negative]
    return auc(classes[keep] == positive, score)


def evaluation_metrics(
    task: str, probabilities: np.ndarray, classes: np.ndarray
) -> dict[str, float]:
    """`task_metrics` plus the goal metrics of docs/models.md."""
    metrics = task_metrics(task, probabilities, classes)
    if task == "sentiment":
        metrics["auc_positive_vs_negative"] = positive_vs_negative_auc(probabilities, classes)
    else:
        # Same as auc_hate_speech / auc_offensive, under the names the goals use.
        metrics["auc_hate_vs_rest"] = auc(classes == DAVIDSON_HATE, probabilities[:, 0])
        metrics["auc_toxic_vs_neither"] = auc(classes != DAVIDSON_NEITHER, probabilities[:, 1])
    return metrics


def fit_lora(
    model: LoraTextModel,
    train: TokenisedRows,
    validation: TokenisedRows,
    config: FinetuneTextJobConfig,
    report: Callable[[dict[str, float], bool, bool], None] | None = None,
) -> FitResult:
    """Train `model` in place; return the best state seen on validation (no Ray needed).

    `report(row, improved, stop)` is called after each validation score (Ray Train reports
    and checkpoints from it).
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    head_params = [p for p in model.head.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head_params}
    encoder_params = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": config.learning_rate},
            {"params": head_params, "lr": config.head_learning_rate},
        ],
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, int(total_steps * config.warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    multi_label = model.config.multi_label
    loss_fn: torch.nn.Module = (
        torch.nn.BCEWithLogitsLoss() if multi_label else torch.nn.CrossEntropyLoss()
    )
    targets = torch.from_numpy(train.targets.astype(np.float32 if multi_label else np.int64))
    lengths = np.array([len(ids) for ids in train.ids])
    metric = config.metric
    history: list[dict[str, float]] = []
    best_score, best_step, stale = -math.inf, 0, 0
    best_state = trainable_state(model)
    step, started_s = 0, time.monotonic()
    losses: list[float] = []

    def evaluate(epoch: float) -> bool:
        nonlocal best_score, best_step, stale, best_state, losses
        probabilities = score_rows(model, validation)
        metrics = evaluation_metrics(model.config.task, probabilities, validation.classes)
        score = metrics[metric]
        improved = score > best_score
        if improved:
            best_score, best_step, stale = score, step, 0
            best_state = trainable_state(model)
        else:
            stale += 1
        stop = stale >= config.early_stopping_patience
        row = {
            "step": float(step),
            "epoch": epoch,
            "train_loss": float(np.mean(losses)) if losses else math.nan,
            "elapsed_s": time.monotonic() - started_s,
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        history.append(row)
        losses = []
        say(
            f"step {step}/{total_steps} (epoch {epoch:.2f}): train_loss {row['train_loss']:.4f} "
            f"val {metric} {score:.4f} (best {best_score:.4f} @ step {best_step})"
            f"{' *best' if improved else ''}, {row['elapsed_s']:.0f} s"
        )
        if report is not None:
            report(row, improved, stop)
        return stop

    model.train()
    stopped = False
    for epoch in range(config.epochs):
        for rows in _batches(lengths, config.batch_size, rng):
            input_ids, mask = _pad(train.ids, rows)
            extra = torch.from_numpy(train.extra[rows])
            optimizer.zero_grad()
            loss = loss_fn(model(input_ids, mask, extra), targets[torch.from_numpy(rows)])
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
            if step % config.eval_every_steps == 0 and step % steps_per_epoch != 0:
                if evaluate(step / steps_per_epoch):
                    stopped = True
                    break
        if stopped:
            say(f"early stop: no better {metric} in {config.early_stopping_patience} scores")
            break
        if evaluate(float(epoch + 1)):
            if epoch + 1 < config.epochs:
                say(f"early stop: no better {metric} in {config.early_stopping_patience} scores")
            break
    model.load_state_dict(best_state, strict=False)
    return FitResult(best_state, best_score, best_step, history)


def _train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: build the model, `fit_lora`, checkpoint the artifact on improvement."""
    config = FinetuneTextJobConfig.model_validate(loop_config["config"])
    torch.set_num_threads(config.torch_threads)
    model_config: LoraTextConfig = loop_config["model_config"]
    arrays = ray.get(loop_config["rows_ref"])
    _, model = build_model(model_config)
    rank = ray.train.get_context().get_world_rank()
    history: list[dict[str, float]] = []

    def report(row: dict[str, float], improved: bool, stop: bool) -> None:
        history.append(row)
        if not improved:
            ray.train.report(row)
            return
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                # Improved: the current weights are the best so far.
                save_lora_model(tmp, model, metrics={"best_step": row["step"]})
                write_history(Path(tmp), history)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(row, checkpoint=checkpoint)

    fit_lora(model, arrays["train"], arrays["validation"], config, report)
    if rank == 0:
        # Final checkpoint: best weights + full history (fit_lora restored the best state).
        with tempfile.TemporaryDirectory() as tmp:
            save_lora_model(tmp, model)
            write_history(Path(tmp), history)
            ray.train.report({"final": 1.0}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report({"final": 1.0})


def frozen_baseline(
    config: FinetuneTextJobConfig,
    data: LabelledTexts,
    split: Split,
    cross: list[LabelledTexts],
) -> dict[str, Any]:
    """Logistic regression on frozen MiniLM vectors (plus the same extra features), trained
    on the same training rows, scored on the same test and cross-domain rows."""
    from sklearn.linear_model import LogisticRegression

    from models.heads import head_inputs, shared_embedder
    from pipelines.text_heads import embed_texts

    def inputs(part: LabelledTexts) -> np.ndarray:
        return head_inputs(config.features, part.texts, embed_texts(part, 64, None))

    train_part = data.subset(np.concatenate([split.train, split.validation]))
    x_train = inputs(train_part)
    columns = range(len(data.labels)) if config.task == "moderation" else [None]
    models = []
    for column in columns:
        # Moderation: one hard-label logistic regression per label (targets >= 0.5).
        y = train_part.classes if column is None else train_part.targets[:, column] >= 0.5
        models.append(LogisticRegression(max_iter=2000, C=1.0).fit(x_train, y))

    def probabilities(part: LabelledTexts) -> np.ndarray:
        x = inputs(part)
        if config.task == "sentiment":
            return np.asarray(models[0].predict_proba(x))
        return np.stack([model.predict_proba(x)[:, 1] for model in models], axis=1)

    return {
        "model": f"frozen {shared_embedder('auto').info.name} + logistic regression",
        "test": evaluation_metrics(
            config.task, probabilities(data.subset(split.test)), data.classes[split.test]
        ),
        "cross_domain": {
            Path(path).name: evaluation_metrics(config.task, probabilities(part), part.classes)
            for path, part in zip(config.cross_domain_paths, cross, strict=True)
        },
    }


def _classifier(task: str) -> type[LoraTextClassifier[Any]]:
    return LoraModerator if task == "moderation" else LoraSentiment


def _read(config: FinetuneTextJobConfig) -> tuple[LabelledTexts, Split, list[LabelledTexts]]:
    data = load_labelled(
        config.task, config.data_paths, config.soft_targets, config.max_rows, config.seed
    )
    split = stratified_split(
        data.classes, config.validation_fraction, config.test_fraction, config.seed
    )
    cross = [
        load_labelled(config.task, [path], config.soft_targets)
        for path in config.cross_domain_paths
    ]
    say(
        f"data: {len(data)} rows -> train {len(split.train)}, validation "
        f"{len(split.validation)}, test {len(split.test)} (held out); cross-domain "
        f"{[len(part) for part in cross]}"
    )
    return data, split, cross


def _train_with_ray(
    config: FinetuneTextJobConfig,
    model_config: LoraTextConfig,
    rows: dict[str, TokenisedRows],
    run_name: str,
) -> tuple[LoraTextModel, list[dict[str, float]]]:
    """Step 3 with a `TorchTrainer`: the best model and the validation history."""
    return fit_and_load(
        _train_loop_per_worker,
        config,
        model_config,
        rows,
        config.epochs,
        run_name,
        f"LoRA rank {config.lora_rank} on {list(config.lora_targets)}, ",
        lambda directory: load_lora_model(directory)[1],
    )


def run_job(config: FinetuneTextJobConfig) -> dict[str, Any]:
    """Run every step of the job (see the module docstring); returns the summary."""
    torch.set_num_threads(config.torch_threads)
    started_s = time.monotonic()
    data, split, cross = _read(config)
    model_config = lora_config_for(config, data.labels)
    tokenizer, _ = build_model(model_config)
    rows = {
        "train": tokenise(tokenizer, model_config, data.subset(split.train)),
        "validation": tokenise(tokenizer, model_config, data.subset(split.validation)),
    }
    run_name = new_run_name(f"{config.task}-lora")
    if config.use_ray_train:
        model, history = _train_with_ray(config, model_config, rows, run_name)
    else:
        # The same loop in this process (no Ray cluster): for a box whose Ray is busy.
        say(f"training in-process (use_ray_train: false), run {run_name}")
        _, model = build_model(model_config)
        history = fit_lora(model, rows["train"], rows["validation"], config).history
    train_s = time.monotonic() - started_s
    output = job_dir(config.output_dir, "finetuned") / run_name
    best = max(history, key=lambda row: row.get(f"val_{config.metric}", -math.inf))

    # Step 4: held-out test and cross-domain rows, through the serving classifier.
    save_lora_model(output, model, metrics={"best_step": best["step"]})
    classifier = _classifier(config.task).load(output, device="cpu")
    test_data = data.subset(split.test)
    validation = evaluation_metrics(
        config.task,
        np.array(classifier.probabilities(data.subset(split.validation).texts)),
        data.classes[split.validation],
    )
    test = evaluation_metrics(
        config.task, np.array(classifier.probabilities(test_data.texts)), test_data.classes
    )
    cross_metrics = {
        Path(path).name: evaluation_metrics(
            config.task, np.array(classifier.probabilities(part.texts)), part.classes
        )
        for path, part in zip(config.cross_domain_paths, cross, strict=True)
    }
    report: dict[str, Any] = {
        "task": config.task,
        "run_name": run_name,
        "seed": config.seed,
        "data_files": [Path(path).name for path in config.data_paths],
        "rows": {
            "train": len(split.train),
            "validation": len(split.validation),
            "test": len(split.test),
            **{
                Path(p).name: len(part)
                for p, part in zip(config.cross_domain_paths, cross, strict=True)
            },
        },
        "best_step": best["step"],
        "train_wall_s": train_s,
        "validation_metrics": validation,
        "test_metrics": test,
        "cross_domain_metrics": cross_metrics,
        "artifact_bytes": sum(f.stat().st_size for f in output.iterdir() if f.is_file()),
    }
    if config.compare_frozen:
        report["frozen_baseline"] = frozen_baseline(config, data, split, cross)
        say(f"frozen baseline: {report['frozen_baseline']}")
    save_lora_model(
        output,
        model,
        metrics={"validation": validation, "test": test, "cross_domain": cross_metrics},
    )
    report_dir = job_dir(config.report_dir, "reports")
    report_path = write_json_report(report_dir, run_name, report)
    say(f"test: {test}")
    for name, metrics in cross_metrics.items():
        say(f"cross-domain {name}: {metrics}")

    # Step 5: MLflow.
    tracking = open_tracking(config.mlflow)
    with mlflow.start_run(experiment_id=tracking.experiment_id, run_name=run_name) as run:
        params = {k: str(v) for k, v in config.model_dump(exclude={"mlflow"}).items()}
        params["data_paths"] = ",".join(Path(p).name for p in config.data_paths)
        params["cross_domain_paths"] = ",".join(Path(p).name for p in config.cross_domain_paths)
        mlflow.log_params(params)
        for row in history:
            mlflow.log_metrics(
                {k: v for k, v in row.items() if k != "step" and not math.isnan(v)},
                step=int(row["step"]),
            )
        final = {f"test_{k}": v for k, v in test.items()}
        final.update({f"val_{k}": v for k, v in validation.items()})
        for name, metrics in cross_metrics.items():
            stem = Path(name).stem.replace("_GroundTruth", "")
            final.update({f"cross_{stem}_{k}": v for k, v in metrics.items()})
        final["train_wall_s"] = train_s
        mlflow.log_metrics({k: v for k, v in final.items() if not math.isnan(v)})
        mlflow.log_artifact(str(report_path), artifact_path="evaluation")
        mlflow.log_artifacts(str(output), artifact_path="lora_model")
        run_id = run.info.run_id
    return {
        "run_name": run_name,
        "artifact": str(output),
        "mlflow_run_id": run_id,
        "tracking_uri": tracking.tracking_uri,
        "train_wall_s": round(train_s, 1),
        "test": test,
        "cross_domain": cross_metrics,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m pipelines.finetune_text --config configs/pipelines/<x>.yaml``."""
    return run_cli(
        __doc__.split("\n\n")[0],
        argv,
        lambda path: run_job(load_finetune_job_config(path)),
    )


if __name__ == "__main__":
    sys.exit(main())
