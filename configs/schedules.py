"""Typed schedules of the retraining jobs (``configs/schedules.yaml``).

``python -m pipelines.schedule`` reads this file, works out which jobs are due and submits them
to a running Ray cluster through the Job Submission API. Unknown keys are an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from configs.base import PositiveSeconds, load_yaml_file
from configs.base import StrictModel as _Strict

__all__ = ["JobSchedule", "Schedules", "load_schedules"]


class JobSchedule(_Strict):
    """One scheduled job: which pipeline, with which config, how often."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    """Unique name: key of the state file and prefix of submission ids."""
    job: Literal["text_heads", "recommender_mf", "ranking_blend", "batch_inference"]
    """Pipeline module run as `python -m pipelines.<job> --config <config>`."""
    config: str = Field(min_length=1)
    """Job config path, relative to the working directory the job runs in."""
    every_s: PositiveSeconds
    """Submit again this long after the last submission, in s."""
    enabled: bool = True
    """false: never due (kept for reference)."""
    entrypoint_num_cpus: float = Field(default=1.0, ge=0)
    """CPUs reserved for the job's driver (Ray Train asks for its workers)."""
    skip_while_running: bool = True
    """Not due while its previous submission is still PENDING or RUNNING."""


class Schedules(_Strict):
    """The schedule file: where the jobs' code comes from, and the jobs."""

    working_dir: str | None = "."
    """runtime_env working_dir uploaded with each job (the project checkout); null when the
    cluster's image has the project installed (KubeRay image)."""
    env_vars: dict[str, str] = Field(default_factory=dict)
    """Extra environment of every job (e.g. MLFLOW_TRACKING_URI); no secrets here."""
    jobs: list[JobSchedule] = Field(min_length=1)
    """The scheduled jobs."""

    @model_validator(mode="after")
    def _unique_names(self) -> Schedules:
        names = [job.name for job in self.jobs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"schedule names {duplicates} appear twice; make each name unique")
        return self


def load_schedules(path: str | Path) -> Schedules:
    """Read and validate the schedule YAML; errors name the file and the bad field."""
    return load_yaml_file(path, Schedules, "schedule file", "configs/schedules.yaml")
