"""Matrix factorisation job, without Ray: data checks, time split, BPR beats popularity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from configs.pipelines import (
    RecommenderMFJobConfig,
    load_batch_job_config,
    load_mf_job_config,
)
from models.ranking import CollaborativeModel, hash_user_id
from pipelines import recommender_mf as mf
from pipelines.synthetic_social import generate


def _config(path: Path, **overrides: Any) -> RecommenderMFJobConfig:
    return RecommenderMFJobConfig.model_validate(
        {
            "source": "jsonl",
            "data_path": str(path),
            "mlflow": {"registered_model_name": "recommender-mf-test"},
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    network = generate(n_users=150, n_posts=600, days=14, seed=0)
    path = tmp_path_factory.mktemp("mf") / "interactions.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for event in network.interactions:
            out.write(json.dumps(event) + "\n")
    return path


def test_shipped_job_files_validate_and_typos_are_errors(tmp_path: Path) -> None:
    assert load_mf_job_config("configs/pipelines/recommender_mf.yaml").source == "service"
    assert load_batch_job_config("configs/pipelines/batch_inference.yaml").concurrency == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: jsonl\nranks: 3\nmlflow: {registered_model_name: x}\n")
    with pytest.raises(ValueError, match="bad.yaml") as error:
        load_mf_job_config(bad)
    assert "ranks" in str(error.value)
    with pytest.raises(ValueError, match="data_path"):
        RecommenderMFJobConfig.model_validate(
            {"source": "jsonl", "mlflow": {"registered_model_name": "x"}}
        )


def test_user_ids_are_hashed_at_the_source(export: Path) -> None:
    config = _config(export)
    data = mf.load_interactions(config)
    assert not any(user.startswith("user-") for user in data.user_hashes)
    assert hash_user_id("user-0000", config.user_id_salt) in data.user_hashes
    # Positives only, first time each: one row per (user, post).
    pairs = set(zip(data.users.tolist(), data.posts.tolist(), strict=True))
    assert len(pairs) == len(data.users)


def test_time_split_holds_out_each_users_latest_positives() -> None:
    users = np.array([0] * 10 + [1] * 2)
    times = np.array([float(t) for t in range(10)] + [5.0, 1.0])
    split = mf.time_split(users, times, validation_fraction=0.1, test_fraction=0.2)
    assert times[split.test].tolist() == [8.0, 9.0]
    assert times[split.validation].tolist() == [7.0]
    # A user with under 3 positives stays in training.
    assert set(np.flatnonzero(users == 1).tolist()) <= set(split.train.tolist())


@pytest.mark.parametrize(
    ("line", "expected"),
    [("not json", "line 2"), ('{"user_id": "u", "type": "like", "timestamp_s": 1}', "post_id")],
)
def test_a_bad_export_line_is_a_clear_error_before_training(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"user_id": "secret-person", "post_id": "p", "type": "like", "timestamp_s": 1}
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=expected) as error:
        mf.load_interactions(_config(path))
    assert "secret-person" not in str(error.value)


def test_missing_export_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        mf.load_interactions(_config(tmp_path / "nowhere.jsonl"))


def test_bpr_beats_popularity_on_the_held_out_time_split(export: Path, tmp_path: Path) -> None:
    config = _config(export, rank=8, epochs=25)
    data = mf.load_interactions(config)
    split = mf.time_split(data.users, data.times_s, config.validation_fraction, 0.2)
    sets = mf._eval_sets(data, split, config.candidate_window_s)
    arrays = mf.training_arrays(data, split, sets)
    loop = {**mf.loop_settings(config), "seed": 0}
    users, posts, history = mf.fit_bpr(arrays, loop)
    assert history[0]["epoch"] == 0.0 and len(history) >= 2
    n_posts = len(data.post_ids)
    model = mf.evaluate_rankings(
        mf._factor_scorer(users, posts), n_posts=n_posts, k=20, **sets.args("test")
    )
    popularity = mf.evaluate_rankings(
        mf._popularity_scorer(data, split), n_posts=n_posts, k=20, **sets.args("test")
    )
    assert model["users"] == popularity["users"] > 100
    assert model["ndcg_at_k"] > popularity["ndcg_at_k"] * 1.2
    assert model["recall_at_k"] > popularity["recall_at_k"]

    # The factors round-trip through the serving format, and the node looks users up by
    # their raw id (hashed with the stored salt), not by the hash.
    CollaborativeModel(
        data.user_hashes, data.post_ids, users, posts, "v-test", config.user_id_salt
    ).save(tmp_path / "factors")
    served = CollaborativeModel.load(tmp_path / "factors")
    assert served.version == "v-test" and served.knows_user("user-0000")
    assert not served.knows_user(hash_user_id("user-0000", config.user_id_salt))
    scores = served.scores("user-0000", data.post_ids[:5])
    expected = np.tanh(posts[:5] @ users[data.user_hashes.index(served._key("user-0000"))])
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
