"""Ray Train set-up shared by the training jobs: scaling, storage, and the best checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from configs.pipelines import RayTrainOptions

if TYPE_CHECKING:
    import ray.train


def resolve_use_gpu(options: RayTrainOptions) -> bool:
    """The configured choice, or GPUs exactly when the driver sees one."""
    return torch.cuda.is_available() if options.use_gpu is None else options.use_gpu


def trainer_configs(
    options: RayTrainOptions, run_name: str, storage_path: Path
) -> tuple[ray.train.ScalingConfig, ray.train.RunConfig]:
    """ScalingConfig and RunConfig of one run; only the best checkpoint is kept."""
    import ray.train

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
