"""Ray Tune head search end to end on tiny synthetic vectors: two trials of two epochs under
ASHA, each an MLflow child run of one parent run; the validation-best trial is the one
registered, through the job's promotion gate, into the parent run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from configs.pipelines import HeadTuneJobConfig
from models.heads import MODERATION_HEAD_LABELS, HeadConfig, davidson_targets
from pipelines.data import LabelledTexts, stratified_split

pytestmark = pytest.mark.integration

MODEL_NAME = "heads-moderation-tune-test"
ROWS = 240


def _prepared() -> object:
    """Rows whose 384-d vectors sit near one centroid per Davidson class (no MiniLM)."""
    from pipelines.text_heads import PreparedData

    rng = np.random.default_rng(0)
    classes = rng.choice(3, size=ROWS, p=[0.2, 0.4, 0.4]).astype(np.int64)
    centroids = rng.normal(size=(3, 384))
    vectors = centroids[classes] + rng.normal(scale=8.0, size=(ROWS, 384))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    data = LabelledTexts(
        [f"synthetic row {i}" for i in range(ROWS)],
        davidson_targets(classes),
        classes,
        MODERATION_HEAD_LABELS,
    )
    split = stratified_split(classes, 0.2, 0.2, seed=0)
    return PreparedData(data, split, vectors, vectors)


def _config(tmp_path: Path) -> HeadTuneJobConfig:
    return HeadTuneJobConfig.model_validate(
        {
            "task": "moderation",
            "data_paths": ["unused.csv"],  # the test hands the job its prepared rows
            "validation_fraction": 0.2,
            "compare_baselines": False,
            "storage_path": str(tmp_path / "ray_results"),
            "report_dir": str(tmp_path / "reports"),
            "mlflow": {
                # Local and private; MLflow 3 refuses its old file store, so sqlite.
                "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                "artifact_location": (tmp_path / "mlartifacts").as_uri(),
                "experiment_name": "test-tune",
                "registered_model_name": MODEL_NAME,
            },
            "search": {
                "learning_rate": {"low": 1e-4, "high": 3e-2},
                "hidden_dim": [8, 16],
                "batch_size": [32],
                "num_samples": 2,
                "max_epochs": 2,
                "grace_period": 1,
                "max_concurrent_trials": 1,
                "cpus_per_trial": 1,
            },
        }
    )


def test_search_logs_child_runs_and_registers_the_validation_best(
    serve_port: int, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from pipelines.tune import run_tune_job

    config = _config(tmp_path)
    head_config = HeadConfig(task="moderation", labels=MODERATION_HEAD_LABELS, embedder="test")
    result = run_tune_job(config, _prepared(), head_config)  # type: ignore[arg-type]

    registration = result.registration
    client = MlflowClient(tracking_uri=registration.tracking_uri)
    parent = client.get_run(registration.run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert len(children) == 2 == len(result.search.trials)
    for child in children:
        assert child.info.status == "FINISHED"
        assert {"learning_rate", "hidden_dim", "dropout"} <= set(child.data.params)
        history = client.get_metric_history(child.info.run_id, "val_macro_auc")
        assert [point.step for point in history] == [1, 2]
    # The registered head is the trial with the best VALIDATION score (ties: the first).
    scores = {
        run.data.tags["tune.trial_id"]: run.data.metrics["best_val_macro_auc"] for run in children
    }
    best_id = result.search.best.trial_id
    assert scores[best_id] == max(scores.values())
    best_child = next(run for run in children if run.data.tags["tune.trial_id"] == best_id)
    assert best_child.data.tags.get("tune.best") == "true"
    assert result.validation_metrics["macro_auc"] == pytest.approx(scores[best_id], abs=1e-6)
    # Handed to the normal gate, logged into the parent run: nothing served, so promoted.
    assert parent.info.status == "FINISHED"
    assert parent.data.params["hidden_dim"] == best_child.data.params["hidden_dim"]
    assert registration.version == "1" and registration.promotion.promoted is True
    assert str(client.get_model_version_by_alias(MODEL_NAME, "serving").version) == "1"
    assert result.test_metrics["macro_auc"] > 0.5
