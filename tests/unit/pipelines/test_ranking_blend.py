"""The learned-blend job without Ray: bad input, the held-out gate, promotion the node loads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from configs.pipelines import RankingBlendJobConfig, load_blend_job_config
from configs.recommender import RecommenderConfig
from deployments.nodes.recommender_state import RecommenderService
from models.blend import BlendWeights
from pipelines import ranking_blend as job
from tests.unit.models.test_blend import synthetic_log


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _config(tmp_path: Path, impressions: Path, events: Path, **overrides: Any) -> Any:
    return RankingBlendJobConfig.model_validate(
        {
            "source": "jsonl",
            "impressions_path": str(impressions),
            "interactions_path": str(events),
            "use_ray": False,
            "output_dir": str(tmp_path / "models"),
            "report_dir": str(tmp_path / "reports"),
            "mlflow": {"registered_model_name": "blend-test", "experiment_name": "blend-test"},
            **overrides,
        }
    )


def _exports(tmp_path: Path, **kwargs: Any) -> tuple[Path, Path]:
    impressions, events = synthetic_log(**kwargs)
    return (
        _write(tmp_path / "impressions.jsonl", impressions),
        _write(tmp_path / "events.jsonl", events),
    )


def test_shipped_config_validates_and_jsonl_needs_both_exports(tmp_path: Path) -> None:
    config = load_blend_job_config("configs/pipelines/ranking_blend.yaml")
    assert config.source == "service" and config.hand_set_weights == RecommenderConfig().weights
    # The job's salt is the node's: otherwise no event meets its impression.
    assert config.user_id_salt == RecommenderConfig().impressions.user_id_salt
    with pytest.raises(ValueError, match="interactions_path"):
        RankingBlendJobConfig.model_validate(
            {"source": "jsonl", "impressions_path": "x", "mlflow": {"registered_model_name": "x"}}
        )


def test_an_empty_log_is_a_clear_error(tmp_path: Path) -> None:
    impressions = _write(tmp_path / "i.jsonl", [])
    events = _write(tmp_path / "e.jsonl", [])
    with pytest.raises(ValueError, match="impression log from source 'jsonl' is empty"):
        job.load_data(_config(tmp_path, impressions, events))


def test_impressions_nobody_saw_are_a_clear_error(tmp_path: Path) -> None:
    impressions, _ = _exports(tmp_path, n_feeds=3)
    events = _write(tmp_path / "none.jsonl", [])
    with pytest.raises(ValueError, match="none of 60 logged impressions was seen"):
        job.load_data(_config(tmp_path, impressions, events))


def test_too_few_impressions_or_positives_is_a_clear_error(tmp_path: Path) -> None:
    impressions, events = _exports(tmp_path, n_feeds=5)
    data = job.load_data(_config(tmp_path, impressions, events)).impressions
    with pytest.raises(ValueError, match="min_impressions=200"):
        job.split_data(_config(tmp_path, impressions, events), data)
    with pytest.raises(ValueError, match="min_positives=50"):
        job.split_data(
            _config(tmp_path, impressions, events, min_impressions=10, min_positives=50), data
        )


def test_a_malformed_export_line_names_the_line_not_its_content(tmp_path: Path) -> None:
    impressions, _ = _exports(tmp_path, n_feeds=2)
    events = tmp_path / "bad.jsonl"
    events.write_text('{"user_id": "secret-person", "post_id": "p", "type": "like"}\n')
    with pytest.raises(ValueError, match="line 1") as error:
        job.load_data(_config(tmp_path, impressions, events))
    assert "secret-person" not in str(error.value)


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SOCIALPLAY_STATE_DIR", str(tmp_path / "state"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_the_gate_promotes_a_better_blend_and_refuses_a_worse_one(
    tmp_path: Path, tracking: str
) -> None:
    # 1. Engagement follows the neighbour term: the learned blend beats the hand-set one on
    # the later feeds, is promoted, and the node ranks with it and names its version.
    first = tmp_path / "first"
    first.mkdir()
    impressions, events = _exports(first, driver="neighbour")
    result = job.run_job(_config(tmp_path, impressions, events))
    held_out = result.report["held_out"]
    assert result.report["serving_version"] == "hand-set"
    assert held_out["learned"]["ndcg_at_k"] > held_out["serving"]["ndcg_at_k"]
    assert result.registration.promotion.promoted
    # A clear win: the bound of the per-feed gain is above 0, as the gate asks.
    assert result.report["held_out_gain"]["lower_bound"] > 0
    assert "lower confidence bound" in result.registration.promotion.reason
    assert result.blend_weights_path is not None
    served = BlendWeights.load(result.blend_weights_path)
    assert served.version == f"blend-test/{result.registration.version}"
    assert served.weights.neighbour > 0.6
    service = RecommenderService(
        RecommenderConfig(blend_weights_path=str(result.blend_weights_path))
    )
    assert service.weights() == served.weights
    assert service.info().blend.version == served.version

    # 2. The earlier feeds follow freshness, the later ones the neighbour term again: the
    # blend learned on the earlier ones is worse on the later ones than the serving (the
    # promoted, neighbour-heavy) one and is refused.
    second = tmp_path / "second"
    second.mkdir()
    early, early_events = synthetic_log(n_feeds=240, driver="freshness", seed=2)
    late, late_events = synthetic_log(
        n_feeds=60, driver="neighbour", seed=3, start_s=1_000_000.0 + 600.0 * 240
    )
    late = [{**row, "feed_id": "late-" + row["feed_id"]} for row in late]
    refused = job.run_job(
        _config(
            tmp_path,
            _write(second / "impressions.jsonl", early + late),
            _write(second / "events.jsonl", early_events + late_events),
        )
    )
    assert refused.report["serving_version"] == result.registration.version
    held_out = refused.report["held_out"]
    assert held_out["learned"]["ndcg_at_k"] < held_out["serving"]["ndcg_at_k"]
    assert not refused.registration.promotion.promoted
    assert refused.blend_weights_path is None
    assert "<=" in refused.registration.promotion.reason


def test_a_win_within_the_noise_of_the_held_out_feeds_does_not_promote() -> None:
    from configs.pipelines import MlflowConfig
    from pipelines.registry import ServingScore, decide_promotion

    settings = MlflowConfig(registered_model_name="blend-test", promotion_margin=0.002)
    serving = ServingScore("1", 0.7534)
    # The synthetic-ratings case of docs/recommender.md: a 0.0021 win over 209 feeds.
    noisy = decide_promotion(settings, "ndcg_at_k", "2", 0.7555, serving, -0.004)
    assert not noisy.promoted
    assert "0.7555 > serving 0.7534" in noisy.reason and "bound -0.0040 <= 0" in noisy.reason
    clear = decide_promotion(settings, "ndcg_at_k", "2", 0.7555, serving, 0.001)
    assert clear.promoted
    # Without a bound, the margin alone decides (the text heads' gate).
    assert decide_promotion(settings, "ndcg_at_k", "2", 0.7555, serving).promoted


class _Call:
    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self, timeout_s: float) -> Any:
        return self.value


class _Method:
    def __init__(self, function: Any) -> None:
        self.function = function

    def remote(self, *args: Any) -> _Call:
        return _Call(self.function(*args))


def test_the_service_source_pages_through_the_nodes_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ray import serve

    from deployments.nodes.recommender import Recommender
    from models.recommender import Interaction, NewPost

    service = RecommenderService(RecommenderConfig(mmr_lambda=1.0))
    service.ingest_posts(
        [NewPost(post_id=f"p{i}", author_id="a", created_at_s=0.0) for i in range(5)]
    )
    candidates = [f"p{i}" for i in range(5)]
    for feed in range(3):
        service.rank_feed("reader", candidates, 5, now_s=100.0 * (feed + 1), use_cache=False)
    service.ingest_interactions(
        [
            Interaction("v1", "reader", "p1", "view", 350.0),
            Interaction("l1", "reader", "p1", "like", 360.0),
        ]
        + [Interaction(f"v{p}", "reader", f"p{p}", "view", 310.0) for p in (2, 3)]
    )

    # The node's own export_interactions (async, user ids hashed with the job's salt).
    node = Recommender.func_or_class.__new__(Recommender.func_or_class)
    node.service = service

    class Handle:
        export_impressions = _Method(service.export_impressions)
        export_interactions = _Method(
            lambda after, limit, salt: asyncio.run(node.export_interactions(after, limit, salt))
        )

    monkeypatch.setattr(serve, "get_deployment_handle", lambda name, app_name: Handle())
    config = RankingBlendJobConfig.model_validate(
        {"source": "service", "page_size": 4, "mlflow": {"registered_model_name": "x"}}
    )
    data = job.load_data(config).impressions
    # 15 logged over 4 pages; the feed at 300 s took all three views, p1 also its like.
    assert data.logged == 15 and data.seen == 3
    assert int(data.positive.sum()) == 1 and set(data.served_at_s.tolist()) == {300.0}
