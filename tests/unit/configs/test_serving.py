"""Config models reject unknown keys and inconsistent values with messages that help."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from configs.app import AppArgs
from configs.ingress import IngressConfig, ModerationPolicyConfig
from configs.nodes import ModelNodeConfig, ModerationModelSpec, SentimentModelSpec

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_serve_config_yaml_validates_against_our_models() -> None:
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text(encoding="utf-8"))
    app = config["applications"][0]
    assert app["import_path"] == "deployments.app:build_app"
    AppArgs.model_validate(app["args"])
    deployments = {d["name"]: d for d in app["deployments"]}
    nodes = ("TextModeration", "Sentiment", "NsfwDetector", "ImageTagger", "ObjectDetector")
    assert {"Ingress", *nodes} <= set(deployments)
    IngressConfig.model_validate(deployments["Ingress"]["user_config"])
    for name in nodes:
        node = ModelNodeConfig.model_validate(deployments[name]["user_config"])
        # Batches only fill when the replica may hold that many requests.
        assert deployments[name]["max_ongoing_requests"] >= node.batching.max_batch_size


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(ValidationError, match="max_batch"):
        ModelNodeConfig.model_validate({"batching": {"max_batch": 8}})
    with pytest.raises(ValidationError, match="moderation"):
        AppArgs.model_validate({"moderation": {}})


def test_transformer_kind_needs_a_path() -> None:
    with pytest.raises(ValidationError, match="moderation_model.path"):
        ModerationModelSpec(kind="transformer")
    with pytest.raises(ValidationError, match="sentiment_model.path"):
        SentimentModelSpec(kind="transformer")


def test_the_shipped_heads_are_the_default_and_take_no_path() -> None:
    assert ModerationModelSpec().kind == "shipped" and SentimentModelSpec().kind == "shipped"
    with pytest.raises(ValidationError, match=r"moderation_model.path='/x' is not used"):
        ModerationModelSpec(path="/x")
    with pytest.raises(ValidationError, match="sentiment_model.path"):
        AppArgs.model_validate({"sentiment_model": {"path": "/x"}})
    # The embedded models stay selectable.
    assert ModerationModelSpec(kind="profanity").kind == "profanity"
    assert SentimentModelSpec(kind="vader").kind == "vader"


def test_stride_must_leave_room_in_the_window() -> None:
    with pytest.raises(ValidationError, match="stride=64"):
        ModerationModelSpec(kind="transformer", path="/x", max_length=64, stride=64)


def test_loader_kwargs_only_for_transformers() -> None:
    assert ModerationModelSpec().loader_kwargs() == {}
    spec = SentimentModelSpec(kind="transformer", path="/x", neutral_threshold=0.6)
    assert spec.loader_kwargs() == {
        "max_length": None,
        "stride": 64,
        "max_windows_per_forward": 64,
        "neutral_threshold": 0.6,
    }


def test_policy_reject_threshold_below_flag_is_refused() -> None:
    with pytest.raises(ValidationError, match="reject threshold 0.3 is below"):
        ModerationPolicyConfig(flag_threshold=0.5, reject_threshold=0.3)
    with pytest.raises(ValidationError, match="'threat'"):
        ModerationPolicyConfig(category_reject_thresholds={"threat": 0.2})
    with pytest.raises(ValidationError, match="use a value in"):
        ModerationPolicyConfig(category_flag_thresholds={"insult": 1.5})


@pytest.mark.parametrize(
    "bad",
    [
        {"limits": {"max_body_bytes": 10}},
        {"limits": {"max_batch_texts": 0}},
        {"timeouts": {"moderation_s": 0}},
        {"batching": {}},
    ],
)
def test_ingress_config_bounds(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        IngressConfig.model_validate(bad)


@pytest.mark.parametrize(
    ("coalesce", "field"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"batch_wait_timeout_s": -0.1}, "batch_wait_timeout_s"),
        ({"max_concurrent_batches": 0}, "max_concurrent_batches"),
        ({"max_batch": 16}, "max_batch"),
    ],
)
def test_bad_coalesce_settings_name_the_field(coalesce: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        IngressConfig.model_validate({"coalesce": coalesce})


def test_coalescing_is_on_by_default_and_can_be_turned_off() -> None:
    assert IngressConfig().coalesce.enabled
    assert not IngressConfig.model_validate({"coalesce": {"enabled": False}}).coalesce.enabled
