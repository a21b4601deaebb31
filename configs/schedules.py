"""Typed schedules of the retraining jobs (``configs/schedules.yaml``).

``python -m pipelines.schedule`` reads this file, works out which jobs are due and submits them
to a running Ray cluster through the Job Submission API. Unknown keys are an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from configs.base import StrictModel as _Strict

__all__ = ["JobSchedule", "Schedules", "load_schedules"]


class JobSchedule(_Strict):
    """One scheduled job: which pipeline, with which config, how often."""

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="Unique name: key of the state file and prefix of submission ids.",
    )
    job: Literal["text_heads", "recommender_mf", "batch_inference"] = Field(
        description="Pipeline module run as `python -m pipelines.<job> --config <config>`."
    )
    config: str = Field(
        min_length=1,
        description="Job config path, relative to the working directory the job runs in.",
    )
    every_s: float = Field(
        gt=0, description="Submit again this long after the last submission, in s."
    )
    enabled: bool = Field(default=True, description="false: never due (kept for reference).")
    entrypoint_num_cpus: float = Field(
        default=1.0,
        ge=0,
        description="CPUs reserved for the job's driver (Ray Train asks for its workers).",
    )
    skip_while_running: bool = Field(
        default=True,
        description="Not due while its previous submission is still PENDING or RUNNING.",
    )


class Schedules(_Strict):
    """The schedule file: where the jobs' code comes from, and the jobs."""

    working_dir: str | None = Field(
        default=".",
        description=(
            "runtime_env working_dir uploaded with each job (the project checkout); null when "
            "the cluster's image has the project installed (KubeRay image)."
        ),
    )
    env_vars: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment of every job (e.g. MLFLOW_TRACKING_URI); no secrets here.",
    )
    jobs: list[JobSchedule] = Field(min_length=1, description="The scheduled jobs.")

    @model_validator(mode="after")
    def _unique_names(self) -> Schedules:
        names = [job.name for job in self.jobs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"schedule names {duplicates} appear twice; make each name unique")
        return self


def load_schedules(path: str | Path) -> Schedules:
    """Read and validate the schedule YAML; errors name the file and the bad field."""
    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(
            f"schedule file {str(source)!r} cannot be read ({exc.strerror}); pass an existing "
            "file, e.g. configs/schedules.yaml"
        ) from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"schedule file {str(source)!r} is not valid YAML: {exc}") from exc
    try:
        return Schedules.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"schedule file {str(source)!r} is invalid:\n{exc}") from exc
