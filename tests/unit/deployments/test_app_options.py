"""Options build_graph gives every deployment (no Ray instance: the graph is only built)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from configs.app import AppArgs
from deployments.app import (
    GRACEFUL_SHUTDOWN_WAIT_LOOP_S,
    HEALTH_CHECK_PERIOD_S,
    build_graph,
    detector_spec,
)


def test_every_deployment_is_checked_often_and_stops_soon_unless_overridden() -> None:
    app = build_graph(AppArgs(), {"Sentiment": {"health_check_period_s": 7.0}})
    ingress = app._bound_deployment
    configs = {"Ingress": ingress._deployment_config}
    for bound in ingress.init_kwargs.values():
        deployment = getattr(bound, "_bound_deployment", None)
        if deployment is not None:
            configs[deployment.name] = deployment._deployment_config
    assert {"Ingress", "TextModeration", "Sentiment"} <= set(configs), configs
    assert configs["Ingress"].health_check_period_s == HEALTH_CHECK_PERIOD_S
    assert configs["TextModeration"].health_check_period_s == HEALTH_CHECK_PERIOD_S
    assert configs["Sentiment"].health_check_period_s == 7.0, "an override wins"
    for config in configs.values():
        assert config.graceful_shutdown_wait_loop_s == GRACEFUL_SHUTDOWN_WAIT_LOOP_S


def test_detector_node_gets_a_tag_map_cut_to_the_taggers_candidates() -> None:
    args = AppArgs.model_validate(
        {"detector_model": {"enabled": True}, "tagger_model": {"tags": ["animal", "beach"]}}
    )
    spec = detector_spec(args)
    assert spec.tag_map is not None and set(spec.tag_map.values()) == {"animal"}
    assert spec.tag_map["dog"] == "animal" and "person" not in spec.tag_map
    ingress = build_graph(args)._bound_deployment
    assert ingress.init_kwargs["detector"]._bound_deployment.name == "ObjectDetector"
    assert "detector" not in build_graph(AppArgs())._bound_deployment.init_kwargs


def test_a_configured_tag_map_must_name_candidate_tags() -> None:
    detector = {"enabled": True, "tag_map": {"dog": "pets"}}
    with pytest.raises(ValidationError, match=r"maps labels to \['pets'\]"):
        AppArgs.model_validate({"detector_model": detector, "tagger_model": {"tags": ["animal"]}})
    with pytest.raises(ValidationError, match="scales"):
        AppArgs.model_validate({"detector_model": {"scales": [0]}})
    with pytest.raises(ValidationError, match="multiple of 32"):
        AppArgs.model_validate({"detector_model": {"input_size_px": 400}})
