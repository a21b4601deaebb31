"""Ray Train set-up shared by the training jobs: scaling, storage, the run, the best checkpoint.

A job's train loop writes its best weights and the whole history (`HISTORY_FILENAME`) into
the last checkpoint it reports, so the driver needs only that checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import ray.train
import torch
from ray.train.torch import TorchTrainer

from configs.pipelines import RayTrainOptions
from pipelines.jobs import job_dir, say

ModelT = TypeVar("ModelT")

HISTORY_FILENAME = "history.json"


def resolve_use_gpu(options: RayTrainOptions) -> bool:
    """The configured choice, or GPUs exactly when the driver sees one."""
    return torch.cuda.is_available() if options.use_gpu is None else options.use_gpu


def trainer_configs(
    options: RayTrainOptions, run_name: str, storage_path: Path
) -> tuple[ray.train.ScalingConfig, ray.train.RunConfig]:
    """ScalingConfig and RunConfig of one run; only the best checkpoint is kept."""
    use_gpu = resolve_use_gpu(options)
    scaling = ray.train.ScalingConfig(
        num_workers=options.num_workers,
        use_gpu=use_gpu,
        resources_per_worker={"CPU": options.cpus_per_worker, **({"GPU": 1} if use_gpu else {})},
    )
    run = ray.train.RunConfig(
        name=run_name,
        storage_path=str(storage_path),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
    )
    return scaling, run


def fit_to_checkpoint(trainer: Any, run_name: str) -> ray.train.Checkpoint:
    """Run ``trainer.fit()`` and return its checkpoint, or fail naming the run and its error."""
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {run_name} ended without a checkpoint: {result.error}")
    checkpoint: ray.train.Checkpoint = result.checkpoint
    return checkpoint


def fit_torch(
    train_loop: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    options: RayTrainOptions,
    run_name: str,
    storage_path: Path,
    model_summary: str,
) -> ray.train.Checkpoint:
    """Fit `train_loop` with a `TorchTrainer` (one progress line first); its last checkpoint.

    `model_summary` is said in the progress line ("rank 32, ").
    """
    scaling_config, run_config = trainer_configs(options, run_name, storage_path)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=scaling_config,
        run_config=run_config,
    )
    say(
        f"training: {options.num_workers} worker(s), "
        f"{'GPU' if scaling_config.use_gpu else 'CPU'}, {model_summary}up to "
        f"{loop_config['epochs']} epochs, run {run_name}"
    )
    return fit_to_checkpoint(trainer, run_name)


def fit_and_load(
    train_loop: Callable[[dict[str, Any]], None],
    options: RayTrainOptions,
    model_config: object,
    rows: object,
    epochs: int,
    run_name: str,
    model_summary: str,
    load_model: Callable[[Path], ModelT],
) -> tuple[ModelT, list[dict[str, float]]]:
    """Fit `train_loop` on `rows` (handed to the workers through the object store) and load
    the best checkpoint with `load_model`: the model and its per-epoch validation history.

    The loop gets ``config`` (`options` dumped), ``model_config``, ``rows_ref`` and ``epochs``.
    """
    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    loop_config = {
        "config": options.model_dump(),
        "model_config": model_config,
        "rows_ref": ray.put(rows),
        "epochs": epochs,
    }
    checkpoint = fit_torch(
        train_loop,
        loop_config,
        options,
        run_name,
        job_dir(options.storage_path, "ray_results"),
        model_summary=model_summary,
    )
    with checkpoint.as_directory() as directory:
        history = read_history(Path(directory))
        return load_model(Path(directory)), history


def write_history(directory: Path, history: list[dict[str, float]]) -> None:
    """Store the per-epoch history next to a checkpoint's weights."""
    (directory / HISTORY_FILENAME).write_text(json.dumps(history))


def read_history(directory: Path) -> list[dict[str, float]]:
    """The per-epoch history a checkpoint holds."""
    history: list[dict[str, float]] = json.loads((directory / HISTORY_FILENAME).read_text())
    return history
