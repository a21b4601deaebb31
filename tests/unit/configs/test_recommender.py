"""Recommender configuration: the yaml entries validate, and bad values are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from configs.app import AppArgs
from configs.nodes import ModelNodeConfig
from configs.recommender import RecommendationRoutesConfig, RecommenderConfig

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_serve_config_runs_the_recommender_with_valid_user_configs() -> None:
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text(encoding="utf-8"))
    app = config["applications"][0]
    assert AppArgs.model_validate(app["args"]).recommender.enabled
    deployments = {d["name"]: d for d in app["deployments"]}
    recommender = RecommenderConfig.model_validate(deployments["Recommender"]["user_config"])
    assert recommender.cache_ttl_s == 300 and deployments["Recommender"]["num_replicas"] == 1
    embedder = ModelNodeConfig.model_validate(deployments["Embedder"]["user_config"])
    assert deployments["Embedder"]["max_ongoing_requests"] >= embedder.batching.max_batch_size


def test_recommender_is_off_by_default_and_unknown_keys_fail() -> None:
    assert AppArgs().recommender.enabled is False
    with pytest.raises(ValidationError, match="mmr"):
        RecommenderConfig.model_validate({"mmr": 0.5})
    with pytest.raises(ValidationError, match="less than or equal to 0"):
        RecommenderConfig.model_validate({"event_weights": {"hide": 1.0}})


def test_routes_config_refuses_results_above_candidates() -> None:
    with pytest.raises(ValidationError, match="max_results=50 is above max_candidates=10"):
        RecommendationRoutesConfig(max_results=50, max_candidates=10)
