"""Issue 6: the serving graph picks a promoted version up without a restart or redeploy.

The moderation node serves the registered head named by the ``serving`` alias (application
args, ``kind: head``) and re-resolves the alias every second (``registry_poll_s: 1``). A
retraining run then promotes a better version through the pipeline's own promotion step; the
node must swap it in on the same replica while requests keep flowing, none failing.

CI-cheap: the tiny synthetic Davidson data of test_retraining, an untrained head (0 epochs)
as version 1, a 3-epoch head as version 2.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from configs.pipelines import TextHeadJobConfig
from configs.schemas import AppArgs
from deployments.app import build_graph
from tests.integration.conftest import TEST_API_KEY, deploy, undeploy
from tests.integration.test_retraining import _job

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private state dir and MLflow store for the driver, for this module only."""
    root = tmp_path_factory.mktemp("alias-follow")
    previous = os.environ.get("SOCIALPLAY_STATE_DIR")
    os.environ["SOCIALPLAY_STATE_DIR"] = str(root / "state")
    yield root
    if previous is None:
        os.environ.pop("SOCIALPLAY_STATE_DIR", None)
    else:
        os.environ["SOCIALPLAY_STATE_DIR"] = previous


MODEL_NAME = "heads-moderation-follow"


def _cheap_job(workdir: Path, epochs: int) -> TextHeadJobConfig:
    job = _job(workdir, epochs)
    # Its own registered name: replicas cache downloads by name and version in the session's
    # state dir, which test_retraining's versions of another store also use.
    mlflow = job.mlflow.model_copy(update={"registered_model_name": MODEL_NAME})
    # Baselines are not what this test is about; skipping them saves a model pass.
    return job.model_copy(update={"compare_baselines": False, "mlflow": mlflow})


@pytest.fixture(scope="module")
def first_version(serve_port: int, workdir: Path) -> dict[str, Any]:
    """Version 1: an untrained head, promoted because nothing held the alias yet."""
    from pipelines.text_heads import run_job

    registration = run_job(_cheap_job(workdir, epochs=0)).registration
    assert registration is not None and registration["promotion"]["promoted"] is True
    return registration


def _moderation(base_url: str) -> dict[str, Any]:
    node = httpx.get(f"{base_url}/health", timeout=10).json()["nodes"]["moderation"]
    assert isinstance(node, dict)
    return node


def test_promoted_version_is_followed_live_without_failed_requests(
    first_version: dict[str, Any], base_url: str, workdir: Path
) -> None:
    from pipelines.text_heads import run_job

    name = first_version["model_name"]
    assert name == MODEL_NAME
    ref = {"model_name": name, "alias": "serving", "tracking_uri": first_version["tracking_uri"]}
    small = {"num_cpus": 0.1}
    graph = build_graph(
        AppArgs.model_validate({"moderation_model": {"kind": "head", "registry": ref}}),
        {
            # Generous node timeouts: training shares this box's CPUs with the traffic, and a
            # slow answer must not be mistaken for a failed swap.
            "Ingress": {
                "ray_actor_options": small,
                "user_config": {"timeouts": {"moderation_s": 30.0, "health_s": 10.0}},
            },
            "TextModeration": {"ray_actor_options": small, "user_config": {"registry_poll_s": 1}},
            "Sentiment": {"ray_actor_options": small},
        },
    )
    deploy(graph, base_url)
    try:
        before = _moderation(base_url)
        assert before["version"] == f"{name}/1"
        assert before["alias_follow"]["alias"] == "serving"

        failures: list[str] = []
        versions: set[str] = set()
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(
                base_url=base_url, headers={"X-API-Key": TEST_API_KEY}, timeout=60
            ) as client:
                while not stop.is_set():
                    response = client.post("/api/v1/moderation/text", json={"text": "hi there"})
                    if response.status_code != 200 or response.json()["degraded"]:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                    else:
                        versions.add(response.json()["model"]["version"])
                    time.sleep(0.1)

        threads = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()

        # Retraining promotes version 2 through the pipeline's promotion step: no redeploy.
        second = run_job(_cheap_job(workdir, epochs=3)).registration
        assert second is not None
        assert (second["version"], second["promotion"]["promoted"]) == ("2", True)

        deadline = time.monotonic() + 60
        after = _moderation(base_url)
        while after["version"] != f"{name}/2":
            assert time.monotonic() < deadline, f"still serving {after['version']} after 60 s"
            time.sleep(0.5)
            after = _moderation(base_url)
        time.sleep(1.0)  # some traffic on the new version too
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

        assert failures == []
        assert versions == {f"{name}/1", f"{name}/2"}
        # The same replica swapped its model: no restart.
        assert after["replica_id"] == before["replica_id"]
        assert after["alias_follow"]["last_error"] is None
        with httpx.Client(
            base_url=base_url, headers={"X-API-Key": TEST_API_KEY}, timeout=30
        ) as client:
            answer = client.post("/api/v1/moderation/text", json={"text": "a calm walk"})
        assert answer.status_code == 200
        assert answer.json()["model"]["version"] == f"{name}/2"
    finally:
        undeploy()
