"""The operator path: ``serve_config.yaml`` itself, deployed declaratively as ``serve deploy``
does, and a ``user_config`` change applied live without restarting replicas."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.conftest import TEST_API_KEY, health_detail

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_config(port: int) -> dict[str, Any]:
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text(encoding="utf-8"))
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    # Two logical CPUs' worth of deployments must fit the test cluster beside other apps.
    for deployment in config["applications"][0]["deployments"]:
        deployment["ray_actor_options"]["num_cpus"] = 0.1
    # The aspect node loads MiniLM once more: test_http_default.py serves it; here it would
    # only add a replica's start-up to the suite's time budget.
    application = config["applications"][0]
    application["args"]["aspect_model"]["enabled"] = False
    application["deployments"] = [
        d for d in application["deployments"] if d["name"] != "AspectSentiment"
    ]
    return dict(config)


def _deploy(config: dict[str, Any], base_url: str) -> None:
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    # Not `_blocking`: Ray's own wait is a fixed 60 s, and nine replicas on two busy cores
    # can take longer; /health below is the real readiness check.
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config), _blocking=False)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if health_detail(base_url).get("status") == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError("serve_config.yaml app did not become healthy in 180 s")


@pytest.fixture(scope="module")
def config(serve_port: int, base_url: str) -> Iterator[dict[str, Any]]:
    from ray import serve

    loaded = _load_config(serve_port)
    _deploy(loaded, base_url)
    yield loaded
    serve.delete(loaded["applications"][0]["name"])


def test_serve_config_yaml_deploys_and_answers(config: dict[str, Any], base_url: str) -> None:
    health = health_detail(base_url)
    # The shipped heads: what `make serve` answers with on a fresh clone.
    assert health["nodes"]["moderation"]["name"] == "heads-moderation"
    assert health["nodes"]["sentiment"]["name"] == "heads-sentiment"
    # One text encoder: the heads embed through the Embedder, holding no MiniLM of their own.
    for node in ("moderation", "sentiment", "replies"):
        assert health["nodes"][node]["text_vectors"]["state"] == "shared encoder", node
    yaml_batching = config["applications"][0]["deployments"][1]["user_config"]["batching"]
    assert health["nodes"]["moderation"]["batching"] == yaml_batching
    response = httpx.post(
        f"{base_url}/api/v1/sentiment/analyze",
        json={"text": "I love this"},
        headers={"X-API-Key": TEST_API_KEY},
    )
    assert response.status_code == 200 and response.json()["label"] == "positive"


def test_user_config_change_is_applied_live_without_restart(
    config: dict[str, Any], base_url: str
) -> None:
    before = health_detail(base_url)["nodes"]["moderation"]
    updated = copy.deepcopy(config)
    deployments = {d["name"]: d for d in updated["applications"][0]["deployments"]}
    new_batching = {"max_batch_size": 4, "batch_wait_timeout_s": 0.002}
    deployments["TextModeration"]["user_config"]["batching"] = new_batching
    deployments["Ingress"]["user_config"]["limits"]["max_batch_texts"] = 2
    _deploy(updated, base_url)

    deadline = time.monotonic() + 30
    after = before
    while time.monotonic() < deadline and after["batching"] != new_batching:
        time.sleep(0.5)
        after = health_detail(base_url)["nodes"]["moderation"]
    assert after["batching"] == new_batching
    assert after["replica_id"] == before["replica_id"], "a user_config change must not restart"
    too_many = httpx.post(
        f"{base_url}/api/v1/moderation/batch",
        json={"texts": ["a", "b", "c"]},
        headers={"X-API-Key": TEST_API_KEY},
    )
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "texts"
