"""The Ray Tune head search's config (search space validation), its param space, the job a
winning trial amounts to, and the trials table. The search itself runs in
tests/integration/test_tune.py."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from configs.pipelines import (
    HeadSearchSpace,
    HeadTuneJobConfig,
    TextHeadJobConfig,
    load_tune_job_config,
)
from pipelines.tune import TrialRecord, head_param_space, trials_table, winner_job_config

REPO_ROOT = Path(__file__).resolve().parents[3]
BASE: dict[str, Any] = {
    "task": "moderation",
    "data_paths": ["x.csv"],
    "mlflow": {"registered_model_name": "heads-moderation"},
}


def test_shipped_tune_configs_validate_with_small_defaults() -> None:
    for name in ("tune_moderation_head.yaml", "tune_sentiment_head.yaml"):
        config = load_tune_job_config(REPO_ROOT / "configs" / "pipelines" / name)
        # Cheap on two cores: one trial at a time, a handful of trials.
        assert config.search.max_concurrent_trials == 1
        assert config.search.num_samples <= 8
    assert HeadSearchSpace().num_samples == 8


@pytest.mark.parametrize(
    ("search", "fragment"),
    [
        ({"learning_rate": {"low": 0.01, "high": 0.001}}, "low=0.01 is above high=0.001"),
        ({"learning_rate": {"low": 0.0, "high": 0.001}}, "greater than 0"),
        ({"dropout": {"low": 0.1, "high": 1.0}}, "within [0, 1)"),
        ({"hidden_dim": [64, 0]}, "hidden_dim choices [0]"),
        ({"hidden_dim": []}, "at least 1 item"),
        ({"batch_size": [100_000]}, "batch_size choices [100000]"),
        ({"grace_period": 10, "max_epochs": 5}, "grace_period=10 is above max_epochs=5"),
        ({"reduction_factor": 1.0}, "greater than 1"),
        ({"num_sample": 4}, "num_sample"),  # a typo is an error, not a default
    ],
)
def test_search_space_rejects_bad_values_naming_them(search: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match="search") as caught:
        HeadTuneJobConfig.model_validate({**BASE, "search": search})
    assert fragment in str(caught.value)


def test_the_plain_head_job_refuses_a_search_section() -> None:
    with pytest.raises(ValueError, match="search"):
        TextHeadJobConfig.model_validate({**BASE, "search": {}})


def test_param_space_draws_ranges_and_fixes_single_values() -> None:
    search = HeadSearchSpace.model_validate(
        {
            "learning_rate": {"low": 1e-4, "high": 1e-2},
            "weight_decay": {"low": 1e-3, "high": 1e-3},
            "hidden_dim": [64, 128],
            "dropout": {"low": 0.0, "high": 0.3},
            "batch_size": [32],
            "max_epochs": 7,
        }
    )
    space = head_param_space(search, "macro_auc", seed=3, patience=2)
    assert isinstance(space["learning_rate"], tune.search.sample.Float)
    assert isinstance(space["learning_rate"].get_sampler(), tune.search.sample.LogUniform)
    assert isinstance(space["dropout"].get_sampler(), tune.search.sample.Uniform)
    assert isinstance(space["hidden_dim"], tune.search.sample.Categorical)
    assert space["hidden_dim"].categories == [64, 128]
    # Equal bounds and one choice are fixed values, not distributions.
    assert space["weight_decay"] == 1e-3 and space["batch_size"] == 32
    assert (space["metric"], space["seed"], space["max_epochs"], space["patience"]) == (
        "macro_auc",
        3,
        7,
        2,
    )


def test_winner_job_config_is_the_plain_job_with_the_drawn_values() -> None:
    config = HeadTuneJobConfig.model_validate({**BASE, "search": {"max_epochs": 12}})
    params = {
        "learning_rate": 0.004,
        "weight_decay": 1e-5,
        "hidden_dim": 512,
        "dropout": 0.25,
        "batch_size": 64,
    }
    winner = winner_job_config(config, params)
    assert type(winner) is TextHeadJobConfig
    assert (winner.learning_rate, winner.hidden_dim, winner.dropout) == (0.004, 512, 0.25)
    assert (winner.weight_decay, winner.batch_size, winner.epochs) == (1e-5, 64, 12)
    assert winner.mlflow == config.mlflow and winner.data_paths == config.data_paths


def test_trials_table_lists_the_best_first_and_marks_it() -> None:
    trials = [
        TrialRecord(1, "a", {"learning_rate": 0.001, "hidden_dim": 128}, 4, 0.91, 4, "asha"),
        TrialRecord(2, "b", {"learning_rate": 0.003, "hidden_dim": 256}, 9, 0.95, 7, "patience"),
        TrialRecord(3, "c", {"learning_rate": 0.01, "hidden_dim": 64}, 0, -math.inf, 0, "error"),
    ]
    lines = trials_table(trials, "macro_auc", best_id="b").splitlines()
    assert "best val macro_auc" in lines[0] and "stopped by" in lines[0]
    assert lines[1].split()[:3] == ["2*", "256", "0.003"]
    assert lines[2].split()[0] == "1" and lines[2].split()[-1] == "asha"
    assert lines[3].split()[0] == "3" and " - " in lines[3]


def test_head_trial_reports_every_epoch_and_checkpoints_its_best(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The trainable alone (no Ray): `tune.report` is captured instead of sent."""
    import shutil

    import numpy as np

    from models.heads import MODERATION_HEAD_LABELS, HeadConfig, davidson_targets, load_head
    from pipelines import tune as tune_module
    from pipelines.ray_train import read_history

    reports: list[tuple[dict[str, Any], Path | None]] = []

    def report(metrics: dict[str, Any], checkpoint: Any = None) -> None:
        kept = None
        if checkpoint is not None:
            kept = tmp_path / f"checkpoint-{len(reports)}"
            shutil.copytree(checkpoint.path, kept)
        reports.append((dict(metrics), kept))

    monkeypatch.setattr(tune_module.tune, "report", report)
    rng = np.random.default_rng(0)
    classes = rng.choice(3, size=120).astype(np.int64)
    vectors = (rng.normal(size=(3, 384))[classes] + rng.normal(scale=3.0, size=(120, 384))).astype(
        np.float32
    )
    arrays = {
        "x_train": vectors[:80],
        "y_train": davidson_targets(classes[:80]),
        "x_val": vectors[80:],
        "val_classes": classes[80:],
    }
    config = {
        "learning_rate": 0.01,
        "weight_decay": 0.0,
        "hidden_dim": 16,
        "dropout": 0.0,
        "batch_size": 16,
        "metric": "macro_auc",
        "seed": 0,
        "max_epochs": 6,
        "patience": 2,
        "threads": 1,
    }
    head_config = HeadConfig(task="moderation", labels=MODERATION_HEAD_LABELS)
    tune_module.head_trial(config, arrays, head_config)

    epochs = [metrics["epoch"] for metrics, _ in reports]
    assert epochs == list(range(1, len(epochs) + 1)) and 1 <= len(epochs) <= 6
    last = reports[-1][0]
    assert last["stopped_by_patience"] == (len(epochs) < 6)
    best = max(metrics["val_macro_auc"] for metrics, _ in reports)
    assert last["best_val_macro_auc"] == best
    # Checkpoints come exactly when the best improves; the last one holds the best epoch.
    checkpoints = [(m, kept) for m, kept in reports if kept is not None]
    assert [m["epoch"] for m, _ in checkpoints] == sorted({m["best_epoch"] for m, _ in reports})
    final = checkpoints[-1][1]
    assert final is not None
    head = load_head(final)
    assert head.config.hidden_dim == 16 and head.metrics["best_epoch"] == last["best_epoch"]
    assert len(read_history(final)) == last["best_epoch"]
