"""Search a text head's hyperparameters with Ray Tune, then register the best like a job.

    python -m pipelines.tune --config configs/pipelines/tune_moderation_head.yaml

Steps, in order:
1. read the job config (`configs.pipelines.HeadTuneJobConfig`: a text-head job + ``search``);
2. check, split and embed the data once in the driver, as `pipelines.text_heads` does (same
   split, same embedding cache); the arrays go to Ray's object store once
   (``tune.with_parameters``) and every trial reads them from there;
3. open one MLflow parent run; run ``num_samples`` trials drawn from the search space, at
   most ``max_concurrent_trials`` at a time, each reporting its validation metrics every
   epoch; ASHA stops trials that trail the others at its rungs; each trial is logged as a
   child run (params, per-epoch metrics, why it stopped); a line per trial shows progress
   and a table sums the trials up at the end;
4. pick the trial with the best validation score (the validation split only: the test
   split plays no part in any choice) and load the weights of its best epoch;
5. score it on the held-out test split next to the embedded default (the report), then log,
   register and promote it through the job's own gate (`pipelines.text_heads.register_head`:
   the serving alias moves only when it beats the serving version), into the parent run.

The search itself (`run_search`) knows nothing about heads: it takes any trainable, a
function of one config dict that calls ``ray.tune.report`` once per epoch with the metric
(and a checkpoint when it improves), its data and a param space. `head_trial` is the head's
trainable; a fine-tuning job plugs in its own.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from configs.pipelines import (
    HeadSearchSpace,
    HeadTuneJobConfig,
    TextHeadJobConfig,
    UniformRange,
    load_tune_job_config,
)
from models.heads import HeadConfig, TextHead, load_head, save_head
from pipelines.evaluation import render_report_markdown, task_metrics
from pipelines.jobs import job_dir, new_run_name, run_cli, say, write_json_report
from pipelines.ray_train import read_history, write_history
from pipelines.registry import Registration, open_tracking
from pipelines.text_heads import (
    PreparedData,
    evaluate,
    head_config_for,
    prepare_data,
    register_head,
)

__all__ = [
    "SEARCHED_FIELDS",
    "SearchOutcome",
    "SearchSettings",
    "TrialRecord",
    "TuneJobResult",
    "head_param_space",
    "head_trial",
    "main",
    "run_search",
    "run_tune_job",
    "winner_job_config",
]

# Job fields a head search draws per trial (the rest of the job config is shared).
SEARCHED_FIELDS = ("learning_rate", "weight_decay", "hidden_dim", "dropout", "batch_size")
# Tag MLflow reads to nest a run under its parent in the UI and the search API.
_PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class SearchSettings:
    """How `run_search` runs: what it maximises, how many trials, ASHA, resources, storage.

    `metric` is a key every trainable report holds; a trial's score is the best value it
    reported (its best epoch), and the search maximises it.
    """

    metric: str
    num_samples: int
    max_epochs: int
    grace_period: int
    reduction_factor: float
    max_concurrent_trials: int
    cpus_per_trial: float
    seed: int
    storage_path: Path
    run_name: str


@dataclass
class TrialRecord:
    """One trial as the search saw it: its drawn params, epochs, best score and end."""

    number: int
    trial_id: str
    params: dict[str, Any]
    epochs: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    status: str = "running"
    mlflow_run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (no data: params and metrics only)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SearchOutcome:
    """A finished search: every trial, the best one and its checkpoint directory."""

    trials: list[TrialRecord]
    best: TrialRecord
    best_checkpoint: Path
    elapsed_s: float


def _best_key(metric: str) -> str:
    return f"best_val_{metric}"


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    """Numeric, finite values only (MLflow refuses NaN in some stores)."""
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, int | float) and math.isfinite(float(value))
    }


def _format_params(params: Mapping[str, Any]) -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.3g}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


class _SearchCallback(tune.Callback):
    """Progress lines and MLflow child runs, one per trial (runs in the driver).

    A trial ends "asha" when the scheduler stopped it, "patience" when it stopped itself for
    lack of progress, "max_epochs" when it ran them all, "error" on an exception.
    """

    def __init__(
        self,
        settings: SearchSettings,
        searched: tuple[str, ...],
        patience_key: str,
        client: MlflowClient | None,
        experiment_id: str | None,
        parent_run_id: str | None,
    ) -> None:
        self.settings = settings
        self.searched = searched
        self.patience_key = patience_key
        self.client = client
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.records: dict[str, TrialRecord] = {}
        self.started_s = time.monotonic()

    def _record(self, trial: Any) -> TrialRecord:
        record = self.records.get(trial.trial_id)
        if record is None:
            params = {key: trial.config[key] for key in self.searched if key in trial.config}
            record = TrialRecord(len(self.records) + 1, trial.trial_id, params)
            self.records[trial.trial_id] = record
        return record

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        record = self._record(trial)
        if self.client is not None and self.experiment_id is not None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=f"{self.settings.run_name}-trial-{record.number:02d}",
                tags={_PARENT_TAG: self.parent_run_id, "tune.trial_id": trial.trial_id},
            )
            record.mlflow_run_id = run.info.run_id
            self.client.log_batch(
                record.mlflow_run_id,
                params=[Param(k, str(v)) for k, v in record.params.items()],
            )
        say(
            f"trial {record.number}/{self.settings.num_samples} started: "
            f"{_format_params(record.params)}"
        )

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        record = self._record(trial)
        record.epochs = int(result.get("epoch", record.epochs))
        score = float(result.get(_best_key(self.settings.metric), -math.inf))
        if score > record.best_score:
            record.best_score = score
            record.best_epoch = int(result.get("best_epoch", record.epochs))
        if self.client is not None and record.mlflow_run_id is not None:
            metrics = _finite(
                {k: v for k, v in result.items() if k.startswith("val_") or k == "train_loss"}
            )
            timestamp_ms = int(time.time() * 1000)
            self.client.log_batch(
                record.mlflow_run_id,
                metrics=[
                    Metric(key, value, timestamp_ms, record.epochs)
                    for key, value in metrics.items()
                ],
            )

    def _end(self, trial: Any, status: str) -> None:
        record = self._record(trial)
        record.status = status
        if self.client is not None and record.mlflow_run_id is not None:
            run_id = record.mlflow_run_id
            if math.isfinite(record.best_score):
                self.client.log_metric(run_id, _best_key(self.settings.metric), record.best_score)
                self.client.log_metric(run_id, "best_epoch", record.best_epoch)
            self.client.set_tag(run_id, "tune.stopped_by", status)
            self.client.set_terminated(run_id, "FAILED" if status == "error" else "FINISHED")
        done = sum(1 for r in self.records.values() if r.status != "running")
        best = max((r.best_score for r in self.records.values()), default=-math.inf)
        say(
            f"trial {record.number}/{self.settings.num_samples} done ({status}): "
            f"{record.epochs} epoch(s), best val {self.settings.metric} "
            f"{record.best_score:.4f} @ epoch {record.best_epoch} | {done}/"
            f"{self.settings.num_samples} done, best so far {best:.4f}, "
            f"{time.monotonic() - self.started_s:.0f} s"
        )

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if last.get(self.patience_key):
            status = "patience"
        elif int(last.get("epoch", 0)) >= self.settings.max_epochs:
            status = "max_epochs"
        else:
            status = "asha"
        self._end(trial, status)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._end(trial, "error")


def trials_table(trials: list[TrialRecord], metric: str, best_id: str | None) -> str:
    """A plain-text table of the trials, best first (params, epochs, score, end)."""
    keys = sorted({key for record in trials for key in record.params})
    header = ["#", *keys, "epochs", f"best val {metric}", "@epoch", "stopped by"]
    rows = []
    for record in sorted(trials, key=lambda r: (-r.best_score, r.number)):
        cells = [f"{record.number}{'*' if record.trial_id == best_id else ''}"]
        for key in keys:
            value = record.params.get(key, "")
            cells.append(f"{value:.3g}" if isinstance(value, float) else str(value))
        score = f"{record.best_score:.4f}" if math.isfinite(record.best_score) else "-"
        cells += [str(record.epochs), score, str(record.best_epoch), record.status]
        rows.append(cells)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def run_search(
    trainable: Callable[..., None],
    param_space: dict[str, Any],
    data: Mapping[str, Any],
    settings: SearchSettings,
    searched: tuple[str, ...],
    tracking: tuple[MlflowClient, str, str] | None = None,
) -> SearchOutcome:
    """Run a Ray Tune search with ASHA and return every trial and the best one.

    Args:
        trainable: ``trainable(config, **data)``; calls ``ray.tune.report`` once per epoch
            with ``epoch``, ``best_val_<metric>`` (its best so far), ``best_epoch`` and
            ``stopped_by_patience``, and a checkpoint whenever its best improves; the last
            checkpoint must hold its best weights.
        param_space: Tune's param space (fixed values and ``tune.*`` distributions).
        data: Keyword arguments of `trainable`, put in Ray's object store once.
        settings: Metric, trials, ASHA, resources, storage.
        searched: Keys of `param_space` shown and logged per trial.
        tracking: ``(client, experiment_id, parent_run_id)``: log each trial as a child run.

    Raises:
        RuntimeError: No trial reported a score (every trial failed): names the first error.
    """
    best_key = _best_key(settings.metric)
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=settings.max_epochs,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
    )
    client, experiment_id, parent_run_id = tracking if tracking else (None, None, None)
    callback = _SearchCallback(
        settings, searched, "stopped_by_patience", client, experiment_id, parent_run_id
    )
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(trainable, **data), {"cpu": settings.cpus_per_trial}
        ),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=best_key,
            mode="max",
            scheduler=scheduler,
            # Random search, seeded. Its own max_concurrent: Tune ignores TuneConfig's
            # max_concurrent_trials when handed a search generator.
            search_alg=BasicVariantGenerator(
                random_state=settings.seed, max_concurrent=settings.max_concurrent_trials
            ),
            num_samples=settings.num_samples,
            # One trial process serves the next: each new one costs seconds of imports.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=settings.run_name,
            storage_path=str(settings.storage_path),
            # Tune's own tables are replaced by the callback's concise per-trial lines.
            verbose=0,
            callbacks=[callback],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )
    say(
        f"search: {settings.num_samples} trial(s), at most {settings.max_concurrent_trials} at "
        f"a time, up to {settings.max_epochs} epochs each, ASHA grace {settings.grace_period} "
        f"/ reduction {settings.reduction_factor:g}, maximising validation {settings.metric}; "
        f"run {settings.run_name}"
    )
    # Tune snapshots its state after each kept checkpoint (num_to_keep); on a small head
    # that takes milliseconds, so its "may become a bottleneck" warning is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started_s = time.monotonic()
    results = tuner.fit()
    every = [results[index] for index in range(len(results))]
    # (score, trial id, result) of each trial that reported a finite validation score.
    scored = [
        (float(result.metrics[best_key]), str(result.metrics["trial_id"]), result)
        for result in every
        if result.metrics is not None
        and math.isfinite(float(result.metrics.get(best_key, math.nan)))
    ]
    if not scored:
        errors = [str(result.error) for result in every if result.error is not None]
        raise RuntimeError(
            f"no trial of search {settings.run_name} reported {best_key}; first error: "
            f"{errors[0] if errors else 'none'}"
        )
    # Highest validation score; ties go to the earlier trial (stable across runs).
    records = callback.records
    _, best_id, winner = max(scored, key=lambda entry: (entry[0], -records[entry[1]].number))
    if winner.checkpoint is None:
        raise RuntimeError(f"the best trial of {settings.run_name} saved no checkpoint")
    best = records[best_id]
    elapsed_s = time.monotonic() - started_s
    trials = sorted(records.values(), key=lambda r: r.number)
    say(trials_table(trials, settings.metric, best.trial_id))
    say(
        f"search done in {elapsed_s:.0f} s: best trial {best.number} "
        f"(val {settings.metric} {best.best_score:.4f} @ epoch {best.best_epoch})"
    )
    return SearchOutcome(trials, best, Path(winner.checkpoint.path), elapsed_s)


# --- the text head's trainable -----------------------------------------------------------


def head_trial(
    config: dict[str, Any], arrays: dict[str, np.ndarray], head_config: HeadConfig
) -> None:
    """Tune trainable of a text head: minibatch AdamW, validation metrics every epoch.

    `config` holds the drawn ``SEARCHED_FIELDS`` plus ``metric``, ``seed``, ``max_epochs``,
    ``patience`` and ``threads``. `arrays` (from the object store): ``x_train``, ``y_train``,
    ``x_val``, ``val_classes``. `head_config` gives task, labels and inputs; the trial sets
    its hidden width and dropout. Checkpoints (`models.heads.save_head` + history) hold the
    best epoch's weights.
    """
    # Ray logs a line per saved checkpoint; the driver's per-trial lines are the progress.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    torch.set_num_threads(max(1, int(config["threads"])))
    torch.manual_seed(int(config["seed"]))
    rng = np.random.default_rng(int(config["seed"]))
    head_config = dataclasses.replace(
        head_config, hidden_dim=int(config["hidden_dim"]), dropout=float(config["dropout"])
    )
    module = TextHead(head_config)
    optimizer = torch.optim.AdamW(
        module.parameters(),
        lr=float(config["learning_rate"]),
        weight_decay=float(config["weight_decay"]),
    )
    loss_fn: torch.nn.Module = (
        torch.nn.BCEWithLogitsLoss() if head_config.multi_label else torch.nn.CrossEntropyLoss()
    )
    # Copies: arrays from the object store are read-only, torch wants writable memory.
    x_train = torch.from_numpy(arrays["x_train"].copy())
    y_train = torch.from_numpy(arrays["y_train"].copy())
    x_val = torch.from_numpy(arrays["x_val"].copy())
    metric, batch_size = str(config["metric"]), int(config["batch_size"])
    history: list[dict[str, float]] = []
    best_score, best_epoch, stale = -math.inf, 0, 0
    for epoch in range(1, int(config["max_epochs"]) + 1):
        module.train()
        order = rng.permutation(len(x_train))
        losses = []
        for start in range(0, len(order), batch_size):
            rows = torch.from_numpy(order[start : start + batch_size])
            optimizer.zero_grad()
            loss = loss_fn(module(x_train[rows]), y_train[rows])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        module.eval()
        with torch.inference_mode():
            probabilities = module.probabilities(x_val).numpy()
        metrics = task_metrics(head_config.task, probabilities, arrays["val_classes"])
        score = metrics[metric]
        improved = score > best_score
        if improved:
            best_score, best_epoch, stale = score, epoch, 0
        else:
            stale += 1
        stop = stale >= int(config["patience"])
        row = {"epoch": float(epoch), "train_loss": float(np.mean(losses)) if losses else 0.0}
        row.update({f"val_{key}": value for key, value in metrics.items()})
        history.append(row)
        report = {
            **row,
            "epoch": epoch,
            _best_key(metric): best_score,
            "best_epoch": best_epoch,
            "stopped_by_patience": stop,
        }
        if improved:
            with tempfile.TemporaryDirectory() as tmp:
                save_head(
                    tmp, copy.deepcopy(module), metrics={"best_epoch": best_epoch, metric: score}
                )
                write_history(Path(tmp), history)
                tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))
        else:
            tune.report(report)
        if stop:
            return


def _space(value: UniformRange | list[int], log: bool = False) -> Any:
    if isinstance(value, list):
        return value[0] if len(value) == 1 else tune.choice(value)
    if value.low == value.high:
        return value.low
    return tune.loguniform(value.low, value.high) if log else tune.uniform(value.low, value.high)


def head_param_space(
    search: HeadSearchSpace, metric: str, seed: int, patience: int
) -> dict[str, Any]:
    """Tune's param space of a head search: the drawn fields and the fixed trial settings."""
    return {
        "learning_rate": _space(search.learning_rate, log=True),
        "weight_decay": _space(search.weight_decay, log=True),
        "hidden_dim": _space(search.hidden_dim),
        "dropout": _space(search.dropout),
        "batch_size": _space(search.batch_size),
        "metric": metric,
        "seed": seed,
        "max_epochs": search.max_epochs,
        "patience": patience,
        "threads": search.cpus_per_trial,
    }


def winner_job_config(config: HeadTuneJobConfig, params: Mapping[str, Any]) -> TextHeadJobConfig:
    """The plain text-head job the best trial amounts to (logged as the registered run's
    params): the job's fields with the drawn values and ``epochs = max_epochs``."""
    fields = config.model_dump(exclude={"search"})
    fields.update({key: params[key] for key in SEARCHED_FIELDS if key in params})
    fields["epochs"] = config.search.max_epochs
    return TextHeadJobConfig.model_validate(fields)


@dataclass(frozen=True)
class TuneJobResult:
    """What a finished search job produced."""

    run_name: str
    search: SearchOutcome
    head_dir: Path
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float]
    registration: Registration


def run_tune_job(
    config: HeadTuneJobConfig,
    prepared: PreparedData | None = None,
    head_config: HeadConfig | None = None,
) -> TuneJobResult:
    """Run every step (module docstring). `prepared` and `head_config` replace steps 2's data
    and the embedder's identity (tests pass synthetic vectors)."""
    prepared = prepared or prepare_data(config)
    head_config = head_config or head_config_for(config, prepared.data.labels)
    if not ray.is_initialized():
        # A local cluster unless RAY_ADDRESS points at a running one.
        ray.init(include_dashboard=False)
    search = config.search
    run_name = new_run_name(f"{config.task}-head-tune")
    storage_path = job_dir(config.storage_path, "ray_results")
    split, data, inputs = prepared.split, prepared.data, prepared.inputs
    targets = data.targets.astype(np.float32 if config.task == "moderation" else np.int64)
    arrays = {
        "x_train": inputs[split.train],
        "y_train": targets[split.train],
        "x_val": inputs[split.validation],
        "val_classes": data.classes[split.validation],
    }
    settings = SearchSettings(
        metric=config.metric,
        num_samples=search.num_samples,
        max_epochs=search.max_epochs,
        grace_period=search.grace_period,
        reduction_factor=search.reduction_factor,
        max_concurrent_trials=search.max_concurrent_trials,
        cpus_per_trial=search.cpus_per_trial,
        seed=config.seed if search.search_seed is None else search.search_seed,
        storage_path=storage_path,
        run_name=run_name,
    )
    tracking = open_tracking(config.mlflow)
    parent = tracking.client.create_run(
        tracking.experiment_id,
        run_name=run_name,
        tags={"tune.search": "ray-tune-asha", "tune.metric": f"val_{config.metric}"},
    )
    parent_id = parent.info.run_id
    tracking.client.log_text(
        parent_id, json.dumps(search.model_dump(), indent=2), "tune/search_space.json"
    )
    try:
        outcome = run_search(
            head_trial,
            head_param_space(search, config.metric, config.seed, config.early_stopping_patience),
            {"arrays": arrays, "head_config": head_config},
            settings,
            SEARCHED_FIELDS,
            (tracking.client, tracking.experiment_id, parent_id),
        )
    except BaseException:
        tracking.client.set_terminated(parent_id, "FAILED")
        raise
    tracking.client.log_text(
        parent_id,
        json.dumps([record.as_dict() for record in outcome.trials], indent=2),
        "tune/trials.json",
    )
    tracking.client.set_tag(parent_id, "tune.best_trial", str(outcome.best.number))
    if outcome.best.mlflow_run_id is not None:
        tracking.client.set_tag(outcome.best.mlflow_run_id, "tune.best", "true")
    tracking.client.log_metric(parent_id, "tune_trials", len(outcome.trials))
    tracking.client.log_metric(parent_id, "tune_search_s", outcome.elapsed_s)

    winner = winner_job_config(config, outcome.best.params)
    head = load_head(outcome.best_checkpoint)
    history = read_history(outcome.best_checkpoint)
    validation, test, report = evaluate(winner, prepared, head, run_name)
    report["tune"] = {
        "trials": len(outcome.trials),
        "best_trial": outcome.best.number,
        "best_params": outcome.best.params,
        "chosen_on": f"validation {config.metric}",
    }
    report_dir = job_dir(config.report_dir, "reports")
    json_path = write_json_report(report_dir, run_name, report)
    md_path = report_dir / f"{run_name}.md"
    md_path.write_text(render_report_markdown(report), encoding="utf-8")
    say(render_report_markdown(report))
    head_dir = storage_path / run_name / "best_head"
    save_head(head_dir, head.module, metrics={"validation": validation, "test": test})
    registration = register_head(
        winner,
        prepared,
        run_name,
        head_dir,
        history,
        validation,
        test,
        (json_path, md_path),
        run_id=parent_id,
    )
    return TuneJobResult(run_name, outcome, head_dir, validation, test, registration)


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m pipelines.tune --config configs/pipelines/tune_<task>_head.yaml``."""

    def run(config_path: str) -> dict[str, object]:
        result = run_tune_job(load_tune_job_config(config_path))
        return {
            "run_name": result.run_name,
            "trials": len(result.search.trials),
            "best_trial": result.search.best.number,
            "best_params": result.search.best.params,
            f"val_{result.registration.promotion.metric}": result.search.best.best_score,
            **result.registration.as_dict(),
        }

    return run_cli(__doc__.split("\n\n")[0], argv, run)


if __name__ == "__main__":
    sys.exit(main())
