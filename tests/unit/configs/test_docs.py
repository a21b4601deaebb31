"""The configuration reference is generated from the config models and cannot go stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field

from configs import docs
from configs.app import AppArgs
from configs.base import StrictModel
from configs.ingress import IngressConfig
from configs.nodes import ModelNodeConfig

REPO_ROOT = Path(__file__).resolve().parents[3]
REFERENCE = REPO_ROOT / "docs" / "configuration.md"


def test_the_committed_reference_is_the_generated_one() -> None:
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.is_file() else ""
    assert committed == docs.render(), (
        f"docs/configuration.md is stale (a config field, default or description changed); "
        f"regenerate it from the repository root with `{docs.REGENERATE_COMMAND}` and commit it"
    )


def test_rendering_is_deterministic() -> None:
    assert docs.render() == docs.render()


class _Undocumented(StrictModel):
    """A model with a field nobody described."""

    documented: int = Field(default=1, description="This one is fine.")
    mystery: int = 2


def test_a_field_without_a_description_stops_the_generator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = docs.UserConfigOwner(("Mystery",), _Undocumented, "Mystery.user_config")
    monkeypatch.setattr(docs, "USER_CONFIGS", (owner,))
    with pytest.raises(docs.MissingDescriptionError, match=r"_Undocumented\.mystery"):
        docs.render()


def test_every_field_is_in_the_reference() -> None:
    page = docs.render()
    for model in (AppArgs, IngressConfig, ModelNodeConfig):
        assert f"### {model.__name__}" in page
        for name in model.model_fields:
            assert f"| `{name}` |" in page


def test_nested_models_get_a_section_and_a_link() -> None:
    page = docs.render()
    assert "| `batching` | [BatchingConfig](#batchingconfig) | its defaults |" in page
    assert "### BatchingConfig" in page
    # Written once, however many fields hold it.
    assert page.count("### RegisteredModelRef") == 1
    assert "`args.moderation_model.registry`" in page
    assert "`<model node>.user_config.model`" in page


def test_defaults_do_not_depend_on_the_checkout() -> None:
    # The smart-reply bank's default is an absolute path in code; the page shows it relative.
    page = docs.render()
    assert '`"configs/smart_replies.yaml"`' in page
    assert str(REPO_ROOT) not in page


def test_environment_variables_are_listed_by_name() -> None:
    page = docs.render()
    for variable in ("API_KEYS", "SOCIALPLAY_DEV_MODE", "REDIS_URL", "MONGODB_URL"):
        assert f"| `{variable}` |" in page


def _serve_config_deployments() -> list[dict[str, Any]]:
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text(encoding="utf-8"))
    deployments: list[dict[str, Any]] = config["applications"][0]["deployments"]
    return deployments


def test_every_shipped_deployment_has_a_documented_user_config_model() -> None:
    for deployment in _serve_config_deployments():
        model = docs.user_config_model(deployment["name"])
        assert model is not None, (
            f"deployment {deployment['name']!r} has no user_config model in "
            "configs.docs.USER_CONFIGS; add the model its reconfigure() validates"
        )
        model.model_validate(deployment.get("user_config") or {})


def test_variants_share_their_main_node_model() -> None:
    assert docs.user_config_model("TextModeration-v2") is ModelNodeConfig
    assert docs.user_config_model("Sentiment-shadow_1") is ModelNodeConfig
    assert docs.user_config_model("Ingress") is IngressConfig
    assert docs.user_config_model("NoSuchNode") is None
    assert docs.user_config_model("TextModerationX") is None
