"""MLflow down at replica start: a registered head that is cached locally still loads, and
the node's /health says where it came from (no Ray, no MLflow server)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

import storage.registry as registry
from configs.nodes import BatchingConfig, RegisteredModelRef
from models.answers import ModelInfo, ModelNodeInfo
from models.heads import HEAD_CONFIG_FILENAME


def dead_tracking_uri() -> str:
    """An http URI on a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry cache holding version 3 of heads-moderation, which alias "prod" named."""
    monkeypatch.setattr(registry, "registry_cache_dir", lambda: tmp_path)
    head = tmp_path / "heads-moderation" / "3" / "head"
    head.mkdir(parents=True)
    (head / HEAD_CONFIG_FILENAME).write_text("{}")
    (tmp_path / "heads-moderation" / "aliases.json").write_text(json.dumps({"prod": "3"}))
    return head


@pytest.mark.parametrize("pin", [{"alias": "prod"}, {"version": 3}])
def test_registry_unreachable_loads_the_cached_version_and_says_so(cache: Path, pin) -> None:
    ref = RegisteredModelRef(model_name="heads-moderation", tracking_uri=dead_tracking_uri(), **pin)
    head_dir, name, version = registry.fetch_registered_head(ref)
    assert (head_dir, name, version) == (cache, "heads-moderation", "3")
    assert registry.model_source("heads-moderation/3") == registry.SOURCE_CACHE
    # What the node's /health shows (deployments.nodes.base fills model_source this way).
    info = ModelNodeInfo(
        model=ModelInfo("heads-moderation", "heads-moderation/3", "cpu", ("ok",)),
        batching=BatchingConfig(),
        replica_id="r",
        model_source=registry.model_source("heads-moderation/3"),
    )
    assert info.as_json()["model_source"] == "cache (registry unreachable)"


def test_registry_unreachable_and_nothing_cached_fails_naming_the_fix(cache: Path) -> None:
    ref = RegisteredModelRef(
        model_name="heads-moderation", alias="staging", tracking_uri=dead_tracking_uri()
    )
    with pytest.raises(registry.RegistryUnreachableError, match="not in the local registry cache"):
        registry.fetch_registered_head(ref)
