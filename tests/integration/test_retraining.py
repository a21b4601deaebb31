"""Retraining end to end: Ray Train on a few hundred synthetic rows, MLflow registry and
promotion, then the promoted version served over HTTP by reconfiguring the running node, and
an alias move followed by the running node with no redeploy and no failed request."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from configs.pipelines import TextHeadJobConfig
from tests.fixtures.labelled_data import write_davidson_csv
from tests.integration.conftest import TEST_API_KEY, health_detail
from tests.integration.replicas import kill_and_wait_for_replacement

pytestmark = pytest.mark.integration

MODEL_NAME = "heads-moderation-test"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private state dir for the driver (caches, reports) for this module only."""
    root = tmp_path_factory.mktemp("retraining")
    previous = os.environ.get("SOCIALPLAY_STATE_DIR")
    os.environ["SOCIALPLAY_STATE_DIR"] = str(root / "state")
    yield root
    if previous is None:
        os.environ.pop("SOCIALPLAY_STATE_DIR", None)
    else:
        os.environ["SOCIALPLAY_STATE_DIR"] = previous


def _job(workdir: Path, epochs: int, compare_baselines: bool = True) -> TextHeadJobConfig:
    data = workdir / "davidson_synthetic.csv"
    if not data.exists():
        write_davidson_csv(data, rows=300, seed=0)
    return TextHeadJobConfig.model_validate(
        {
            "task": "moderation",
            "data_paths": [str(data)],
            "epochs": epochs,
            "batch_size": 32,
            "learning_rate": 0.003,
            "hidden_dim": 64,
            # The stacked head of configs/pipelines/moderation_head.yaml: training, promotion
            # and the served node all build MiniLM + alt-profanity-check inputs.
            "features": ["embedding", "profanity"],
            "embedding_cache": True,
            "compare_baselines": compare_baselines,
            "storage_path": str(workdir / "ray_results"),
            "report_dir": str(workdir / "reports"),
            "mlflow": {
                "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
                "artifact_location": (workdir / "mlartifacts").as_uri(),
                "experiment_name": "test-text-heads",
                "registered_model_name": MODEL_NAME,
                "promotion_margin": 0.01,
            },
        }
    )


@pytest.fixture(scope="module")
def trained(serve_port: int, workdir: Path) -> dict[str, Any]:
    """Run 1: a trained head (promoted: nothing held the alias). Uses the session Ray."""
    from pipelines.text_heads import run_job

    result = run_job(_job(workdir, epochs=3))
    return {"result": result, "registration": result.registration}


def _serve_config(port: int, moderation_user_config: dict[str, Any]) -> dict[str, Any]:
    small = {"num_cpus": 0.1}
    return {
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [
            {
                "name": "socialplay",
                "route_prefix": "/",
                "import_path": "deployments.app:build_app",
                # Moderation: the shipped head (the default), which the registry overrides.
                "args": {"sentiment_model": {"kind": "vader"}},
                "deployments": [
                    {
                        "name": "Ingress",
                        "ray_actor_options": small,
                        # "No dropped request" is the point here, not latency: a model load
                        # on two busy cores may hold a batch for seconds.
                        "user_config": {"timeouts": {"moderation_s": 60.0}},
                    },
                    {"name": "Sentiment", "ray_actor_options": small},
                    {
                        "name": "TextModeration",
                        "ray_actor_options": small,
                        "user_config": moderation_user_config,
                    },
                ],
            }
        ],
    }


def _deploy_and_wait(config: dict[str, Any], base_url: str, expect_version: str | None) -> None:
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    # Not `_blocking` (a fixed 60 s in Ray): /health below is the readiness check.
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config), _blocking=False)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            moderation = health_detail(base_url)["nodes"]["moderation"]
            # Ready means the node answered /health (not "unavailable" while it starts).
            ready = moderation.get("status") == "ok"
            if ready and (expect_version is None or moderation.get("version") == expect_version):
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"moderation node did not report version {expect_version} in 180 s")


def test_trained_head_is_registered_promoted_and_reported(trained: dict[str, Any]) -> None:
    registration = trained["registration"]
    assert registration.version == "1"
    assert registration.promotion.promoted is True
    result = trained["result"]
    # Early stopping history: epoch 0 is the untrained floor, then up to 3 epochs.
    assert [row["epoch"] for row in result.history][:2] == [0.0, 1.0]
    assert result.test_metrics["macro_auc"] > 0.9
    from models.heads import load_head

    head = load_head(result.head_dir)
    assert head.config.features == ("embedding", "profanity") and head.config.input_dim == 386
    report = result.report
    assert report["rows"]["test"] > 0 and "baseline" in report["head_vs_baseline"]
    # The exported report holds numbers only, never a row of text.
    text = result.report_paths[1].read_text()
    assert "zorblax" not in text and "idiot" not in text


def test_worse_candidate_is_not_promoted(trained: dict[str, Any], workdir: Path) -> None:
    from mlflow.tracking import MlflowClient

    from pipelines.text_heads import run_job

    # 0 epochs: the untrained head. It is registered (version 2) but must not take the alias.
    # The gate compares validation scores only: the baselines' report is run 1's to check.
    worse = run_job(_job(workdir, epochs=0, compare_baselines=False))
    registration = worse.registration
    assert registration is not None
    decision = registration.promotion
    assert registration.version == "2"
    assert decision.promoted is False
    assert decision.serving_version == "1"
    assert decision.candidate_score < decision.serving_score
    client = MlflowClient(tracking_uri=registration.tracking_uri)
    assert str(client.get_model_version_by_alias(MODEL_NAME, "serving").version) == "1"
    run = client.get_run(registration.run_id)
    assert run.data.tags["promotion.decision"] == "rejected"
    assert "promotion_serving_score" in run.data.metrics
    from pipelines.registry import set_serving_version

    with pytest.raises(LookupError, match="no version '99'"):
        set_serving_version(MODEL_NAME, "99", tracking_uri=registration.tracking_uri)
    assert str(client.get_model_version_by_alias(MODEL_NAME, "serving").version) == "1"


def test_promoted_version_is_served_after_live_reconfigure(
    trained: dict[str, Any], serve_port: int, base_url: str, workdir: Path
) -> None:
    from ray import serve

    registration = trained["registration"]
    _deploy_and_wait(_serve_config(serve_port, {}), base_url, None)
    try:
        before = health_detail(base_url)["nodes"]["moderation"]
        assert before["name"] == "heads-moderation" and before["version"].startswith("shipped-")

        # Requests keep flowing while the node swaps models: none may fail.
        failures: list[str] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(
                base_url=base_url, headers={"X-API-Key": TEST_API_KEY}, timeout=30
            ) as client:
                while not stop.is_set():
                    response = client.post("/api/v1/moderation/text", json={"text": "hello"})
                    if response.status_code != 200 or response.json()["degraded"]:
                        failures.append(f"{response.status_code} {response.text[:300]}")

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        ref = {
            "model_name": MODEL_NAME,
            "alias": "serving",
            "tracking_uri": registration.tracking_uri,
        }
        node_config = {"model": ref, "registry_poll_s": 1}
        _deploy_and_wait(_serve_config(serve_port, node_config), base_url, f"{MODEL_NAME}/1")
        after = health_detail(base_url)["nodes"]["moderation"]
        assert after["name"] == MODEL_NAME
        assert after["labels"] == ["hate_speech", "offensive"]
        # Same replica: the model was swapped by reconfigure(), not by a restart.
        assert after["replica_id"] == before["replica_id"]

        # Moving the alias (here by hand, as a rollback would; promotion moves it the same
        # way) reaches the running node with no redeploy: it follows the alias by itself.
        from pipelines.registry import set_serving_version

        previous = set_serving_version(
            MODEL_NAME, "2", tracking_uri=registration.tracking_uri, reason="test rollback"
        )
        assert previous == "1"
        deadline = time.monotonic() + 60
        while after["version"] != f"{MODEL_NAME}/2":
            assert time.monotonic() < deadline, f"still serving {after['version']} after 60 s"
            time.sleep(0.5)
            after = health_detail(base_url)["nodes"]["moderation"]
        assert after["replica_id"] == before["replica_id"]
        assert after["alias_follow"]["last_error"] is None
        stop.set()
        thread.join(timeout=30)
        assert failures == []
        set_serving_version(MODEL_NAME, "1", tracking_uri=registration.tracking_uri)
        deadline = time.monotonic() + 60
        while after["version"] != f"{MODEL_NAME}/1":
            assert time.monotonic() < deadline, f"still serving {after['version']} after 60 s"
            time.sleep(0.5)
            after = health_detail(base_url)["nodes"]["moderation"]

        with httpx.Client(
            base_url=base_url, headers={"X-API-Key": TEST_API_KEY}, timeout=30
        ) as client:
            answer = client.post(
                "/api/v1/moderation/text", json={"text": "have a calm walk in the park"}
            ).json()
        assert answer["model"]["version"] == f"{MODEL_NAME}/1"
        assert set(answer["scores"]) == {"hate_speech", "offensive"}

        # MLflow down at replica start: a new replica (not a reconfigure) whose tracking
        # server does not answer loads the version it cached and says so in /health. The
        # running replica already serves version 1, so the reconfigure to the dead registry
        # loads nothing; the replica Serve starts after the kill loads at start-up.
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            dead_uri = f"http://127.0.0.1:{unused.getsockname()[1]}"
        pinned = {"model_name": MODEL_NAME, "version": 1, "tracking_uri": dead_uri}
        _deploy_and_wait(_serve_config(serve_port, {"model": pinned}), base_url, f"{MODEL_NAME}/1")
        replaced = kill_and_wait_for_replacement("socialplay", "TextModeration", 120.0)
        assert replaced.running_at_s is not None, "Serve started no new TextModeration replica"
        _deploy_and_wait(_serve_config(serve_port, {"model": pinned}), base_url, f"{MODEL_NAME}/1")
        cached = health_detail(base_url)["nodes"]["moderation"]
        assert cached["model_source"] == "cache (registry unreachable)", cached
        assert cached["replica_id"] != before["replica_id"]
    finally:
        serve.delete("socialplay")
