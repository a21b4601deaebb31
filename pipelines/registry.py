"""MLflow, training side: one run per job, the registered version, and promotion.

Every training job ends the same way (`log_and_register`): one MLflow run with the job's
params, per-epoch and final metrics and its evaluation report; the model logged as an
``mlflow.pyfunc`` model and registered; then promotion: the serving alias moves to the new
version only when it beats the version serving now by more than ``promotion_margin`` on the
job's promotion metric (`decide_promotion`). The decision is logged (``promotion.json``, run
tags) and tagged on the version. Nothing from the training data is logged: params are config
values, input examples are made up, reports hold counts and metrics only.

What differs per job (its pyfunc wrapper, how the serving version is scored) stays in the job
(`pipelines.text_heads`, `pipelines.recommender_mf`). Operators move an alias by hand with
`set_serving_version` (a rollback).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from configs.pipelines import MlflowConfig
from storage.registry import (
    default_artifact_location,
    download_version,
    registry_cache_dir,
    registry_client,
    resolve_tracking_uri,
)

__all__ = [
    "PromotionDecision",
    "PyfuncModel",
    "Registration",
    "RunRecord",
    "ServingScore",
    "Tracking",
    "alias_version",
    "decide_promotion",
    "experiment_id_for",
    "log_and_register",
    "open_tracking",
    "serving_version_files",
    "set_serving_version",
]

logger = logging.getLogger("pipelines.registry")


@dataclass(frozen=True)
class Tracking:
    """A client of the job's tracking store, and the id of its experiment there."""

    tracking_uri: str
    client: MlflowClient
    experiment_id: str


@dataclass(frozen=True)
class ServingScore:
    """The version serving now, scored on the candidate's validation rows.

    ``version`` None: no version holds the alias (the candidate takes it). ``mismatch``: why
    the two cannot be compared (the candidate is then not promoted).
    """

    version: str | None
    score: float | None = None
    mismatch: str | None = None


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the candidate took the serving alias, and why (logged as ``promotion.json``)."""

    metric: str
    margin: float
    candidate_version: str
    candidate_score: float
    serving_version: str | None
    serving_score: float | None
    promoted: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        """The decision as JSON-ready fields."""
        return asdict(self)


@dataclass(frozen=True)
class Registration:
    """Where a job's run and registered version are, and the promotion decision."""

    tracking_uri: str
    run_id: str
    model_name: str
    version: str
    promotion: PromotionDecision

    def as_dict(self) -> dict[str, object]:
        """The registration as JSON-ready fields (the job's CLI prints it)."""
        return {
            "tracking_uri": self.tracking_uri,
            "run_id": self.run_id,
            "model_name": self.model_name,
            "version": self.version,
            "promotion": self.promotion.as_dict(),
        }


@dataclass(frozen=True)
class RunRecord:
    """What one run logs besides its model: config values, metrics and report files.

    ``history`` rows hold an ``epoch`` and that epoch's metrics (logged as ``epoch_<name>`` at
    step ``epoch``); ``metrics`` are final values under their logged names. NaN values (an
    undefined AUC) are not logged.
    """

    params: Mapping[str, object]
    history: Sequence[Mapping[str, float]]
    metrics: Mapping[str, float]
    reports: Sequence[Path]


@dataclass(frozen=True)
class PyfuncModel:
    """The ``mlflow.pyfunc`` model of a version: its wrapper, its files and a made-up example."""

    python_model: Any  # an mlflow PythonModel instance
    artifacts: Mapping[str, str]
    input_example: Any  # pandas DataFrame: a made-up input, never a training row
    output_example: Any  # pandas DataFrame of what that input returns
    pip_requirements: Sequence[str]


def experiment_id_for(
    client: MlflowClient, tracking_uri: str, experiment_name: str, artifact_location: str | None
) -> str:
    """The id of MLflow experiment ``experiment_name``, created on first use."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return str(experiment.experiment_id)
    if artifact_location is None:
        artifact_location = default_artifact_location(tracking_uri)
    return str(client.create_experiment(experiment_name, artifact_location=artifact_location))


def open_tracking(settings: MlflowConfig) -> Tracking:
    """The tracking store and experiment a job's `settings` name."""
    tracking_uri = resolve_tracking_uri(settings.tracking_uri)
    client = registry_client(tracking_uri)
    experiment_id = experiment_id_for(
        client, tracking_uri, settings.experiment_name, settings.artifact_location
    )
    return Tracking(tracking_uri, client, experiment_id)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version `alias` of registered model `name` names, or None when none holds it."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def serving_version_files(
    settings: MlflowConfig, marker: str, trained_by: str
) -> tuple[str, Path] | None:
    """The version holding the serving alias and its downloaded directory holding `marker`;
    None when no version holds the alias (the first candidate takes it)."""
    name = settings.registered_model_name
    client = registry_client(resolve_tracking_uri(settings.tracking_uri))
    version = alias_version(client, name, settings.serving_alias)
    if version is None:
        return None
    return version, download_version(name, version, registry_cache_dir(), marker, trained_by)


def decide_promotion(
    settings: MlflowConfig,
    metric: str,
    candidate_version: str,
    candidate_score: float,
    serving: ServingScore,
    gain_lower_bound: float | None = None,
) -> PromotionDecision:
    """Promote when no version serves, or when the candidate wins by more than the margin
    (and, when `gain_lower_bound` is given, a confidence bound on its gain is above 0: a win
    within the sampling noise of the evaluation rows does not move the alias)."""
    margin = settings.promotion_margin

    def decision(promoted: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(
            metric,
            margin,
            candidate_version,
            candidate_score,
            serving.version,
            serving.score,
            promoted,
            reason,
        )

    if serving.version is None:
        return decision(True, f"no version held alias {settings.serving_alias!r}")
    if serving.mismatch is not None or serving.score is None:
        return decision(False, serving.mismatch or "the serving version could not be scored")
    wins = candidate_score > serving.score + margin
    reason = (
        f"candidate {metric} {candidate_score:.4f} {'>' if wins else '<='} serving "
        f"{serving.score:.4f} + margin {margin}"
    )
    if gain_lower_bound is None:
        return decision(wins, reason)
    certain = gain_lower_bound > 0.0
    return decision(
        wins and certain,
        f"{reason}; the gain's lower confidence bound {gain_lower_bound:.4f} "
        f"{'>' if certain else '<='} 0",
    )


def _finite(metrics: Mapping[str, float], prefix: str = "") -> dict[str, float]:
    # MLflow rejects NaN in some stores; an undefined AUC is simply not logged.
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if not math.isnan(float(v))}


def _log_run(record: RunRecord) -> None:
    mlflow.log_params({key: str(value) for key, value in record.params.items()})
    for row in record.history:
        epoch_metrics = {k: v for k, v in row.items() if k != "epoch"}
        mlflow.log_metrics(_finite(epoch_metrics, "epoch_"), step=int(row["epoch"]))
    mlflow.log_metrics(_finite(record.metrics))
    for path in record.reports:
        mlflow.log_artifact(str(path), artifact_path="evaluation")


def _log_decision(
    client: MlflowClient, settings: MlflowConfig, decision: PromotionDecision
) -> None:
    name, version = settings.registered_model_name, decision.candidate_version
    if decision.promoted:
        client.set_registered_model_alias(name, settings.serving_alias, version)
    client.set_model_version_tag(
        name, version, "promotion", "promoted" if decision.promoted else "rejected"
    )
    logger.info("promotion of %s v%s: %s", name, version, decision.reason)


def log_and_register(
    settings: MlflowConfig,
    run_name: str,
    record: RunRecord,
    model: PyfuncModel,
    metric: str,
    candidate_score: float,
    score_serving: Callable[[], ServingScore],
    run_id: str | None = None,
    gain_lower_bound: float | None = None,
) -> Registration:
    """Log one run, register its model, and promote it (see the module docstring).

    `score_serving` scores the version serving now (called only when ``settings.promote``).
    `gain_lower_bound`: see `decide_promotion`.
    `run_id` logs into that existing run (and ends it) instead of a new one: a Ray Tune
    search's parent run, whose trials are its child runs.
    """
    tracking = open_tracking(settings)
    name = settings.registered_model_name
    if run_id is not None:
        started = mlflow.start_run(run_id=run_id)
    else:
        started = mlflow.start_run(experiment_id=tracking.experiment_id, run_name=run_name)
    with started as run:
        _log_run(record)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=model.python_model,
            artifacts=dict(model.artifacts),
            signature=infer_signature(model.input_example, model.output_example),
            input_example=model.input_example,
            pip_requirements=list(model.pip_requirements),
            registered_model_name=name,
        )
        version = str(info.registered_model_version)
        if settings.promote:
            serving = score_serving()
            decision = decide_promotion(
                settings, metric, version, candidate_score, serving, gain_lower_bound
            )
            _log_decision(tracking.client, settings, decision)
        else:
            decision = PromotionDecision(
                metric,
                settings.promotion_margin,
                version,
                candidate_score,
                None,
                None,
                False,
                "promotion disabled",
            )
        mlflow.log_dict(decision.as_dict(), "promotion.json")
        mlflow.set_tags(
            {
                "promotion.decision": "promoted" if decision.promoted else "rejected",
                "promotion.reason": decision.reason,
                "registered_version": version,
            }
        )
        scores = {
            "promotion_candidate_score": decision.candidate_score,
            "promotion_serving_score": decision.serving_score,
        }
        mlflow.log_metrics({k: float(v) for k, v in scores.items() if v is not None})
        return Registration(tracking.tracking_uri, run.info.run_id, name, version, decision)


def set_serving_version(
    model_name: str,
    version: str,
    alias: str = "serving",
    tracking_uri: str | None = None,
    reason: str = "set by hand",
) -> str | None:
    """Point ``alias`` at ``version`` without a comparison: an operator's rollback or forced
    promotion. Nodes following the alias swap to it within their ``registry_poll_s``.

    Returns the version that held the alias before (None when none did). The change is
    recorded on the version's tags (``promotion: manual``, ``promotion.reason``).

    Raises:
        LookupError: The model has no such version.
    """
    client = registry_client(resolve_tracking_uri(tracking_uri))
    try:
        client.get_model_version(model_name, version)
    except MlflowException as exc:
        raise LookupError(
            f"{model_name!r} has no version {version!r} in the registry; list the versions "
            "with `mlflow models` or the MLflow UI and pick one of them"
        ) from exc
    previous = alias_version(client, model_name, alias)
    client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, "promotion", "manual")
    client.set_model_version_tag(model_name, version, "promotion.reason", reason[:500])
    logger.info("alias %s of %s moved by hand: v%s -> v%s", alias, model_name, previous, version)
    return previous
