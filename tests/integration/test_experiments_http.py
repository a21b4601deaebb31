"""Model variants side by side, an A/B experiment on moderation and a shadow on sentiment."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from configs.app import AppArgs
from configs.experiments import ExperimentConfig
from deployments.app import build_graph
from deployments.ingress.experiments import assign_arm
from tests.integration.conftest import deploy, health_detail, undeploy

pytestmark = pytest.mark.integration

AB_EXPERIMENT = {
    "task": "moderation",
    "mode": "ab",
    "arms": [{"variant": None, "share": 0.5}, {"variant": "v2", "share": 0.5}],
}
SHADOW_EXPERIMENT = {"task": "sentiment", "mode": "shadow", "candidate": "v2", "timeout_s": 20.0}
INGRESS_CONFIG = {"experiments": {"mod-ab": AB_EXPERIMENT, "sent-shadow": SHADOW_EXPERIMENT}}


@pytest.fixture(scope="module")
def experiments_app(
    base_url: str, tiny_moderation_checkpoint: Path, tiny_sentiment_checkpoint: Path
) -> Iterator[None]:
    args = AppArgs.model_validate(
        {
            "moderation_model": {"kind": "profanity"},
            "sentiment_model": {"kind": "vader"},
            "moderation_variants": {
                "v2": {
                    "kind": "transformer",
                    "path": str(tiny_moderation_checkpoint),
                    "stride": 8,  # the tiny checkpoint has 64 positions
                }
            },
            "sentiment_variants": {
                "v2": {
                    "kind": "transformer",
                    "path": str(tiny_sentiment_checkpoint),
                    "stride": 8,
                }
            },
        }
    )
    small = {"ray_actor_options": {"num_cpus": 0.1}}
    graph = build_graph(
        args,
        {
            "Ingress": {**small, "user_config": INGRESS_CONFIG},
            "TextModeration": small,
            "Sentiment": small,
            "TextModeration-v2": small,
            "Sentiment-v2": small,
        },
    )
    deploy(graph, base_url)
    yield
    undeploy()


def _experiment(client: httpx.Client, name: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/experiments/{name}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _arm_requests(report: dict[str, Any]) -> dict[str, int]:
    return {arm["arm"]: arm["requests"] for arm in report["arms"]}


def test_health_lists_each_variant_as_its_own_node(experiments_app: None, base_url: str) -> None:
    nodes = health_detail(base_url)["nodes"]
    assert {"moderation", "sentiment", "moderation:v2", "sentiment:v2"} <= set(nodes)
    assert all(nodes[n]["status"] == "ok" for n in nodes)
    # Side by side: two different models answer for one task.
    assert nodes["moderation:v2"]["name"] != nodes["moderation"]["name"]
    assert nodes["moderation:v2"]["labels"] != nodes["moderation"]["labels"]


def test_ab_users_stick_to_their_arm_and_both_arms_answer(
    experiments_app: None, client: httpx.Client
) -> None:
    before = _arm_requests(_experiment(client, "mod-ab"))
    config = ExperimentConfig.model_validate(AB_EXPERIMENT)
    seen: dict[str, tuple[str | None, str]] = {}
    for i in range(40):
        user = f"user-{i}"
        response = client.post("/api/v1/moderation/text", json={"text": "hello", "user_id": user})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["experiment"] == "mod-ab" and body["degraded"] is False
        expected_arm = assign_arm("mod-ab", config, user)
        assert body["variant"] == (None if expected_arm == "default" else "v2")
        seen[user] = (body["variant"], body["model"]["name"])
    variants = Counter(variant for variant, _ in seen.values())
    assert set(variants) == {None, "v2"}
    # Each arm is answered by its own model.
    assert len({model for _, model in seen.values()}) == 2
    # The same user again (single, batch and post routes): the same variant.
    for user in ("user-0", "user-1", "user-2"):
        again = client.post("/api/v1/moderation/text", json={"text": "hi", "user_id": user})
        assert again.json()["variant"] == seen[user][0]
        batch = client.post(
            "/api/v1/moderation/batch", json={"texts": ["a b", "c d"], "user_id": user}
        )
        assert [r["variant"] for r in batch.json()["results"]] == [seen[user][0]] * 2
        post = client.post("/api/v1/moderation/moderate", json={"content": "hey", "user_id": user})
        assert post.json()["variant"] == seen[user][0]
    extra = Counter(
        "default" if seen[u][0] is None else "v2" for u in ("user-0", "user-1", "user-2")
    )
    report = _experiment(client, "mod-ab")
    after = _arm_requests(report)
    for arm in ("default", "v2"):
        sent = variants[None if arm == "default" else "v2"] + 3 * extra[arm]
        assert after[arm] - before[arm] == sent
    assert report["mode"] == "ab" and report["shadow"] is None
    assert all(arm["latency_p50_s"] is not None for arm in report["arms"])


def test_a_request_without_user_id_goes_to_the_control_arm_as_unassigned(
    experiments_app: None, client: httpx.Client
) -> None:
    before = _experiment(client, "mod-ab")["unassigned"]
    body = client.post("/api/v1/moderation/text", json={"text": "hello there"}).json()
    assert (body["variant"], body["experiment"]) == (None, "mod-ab")
    assert _experiment(client, "mod-ab")["unassigned"] == before + 1


def test_shadow_compares_in_the_background_and_answers_from_the_main_node(
    experiments_app: None, client: httpx.Client
) -> None:
    texts = ["i love this", "this is awful", "the weather is calm", "great post", "bad day"]
    for text in texts:
        response = client.post("/api/v1/sentiment/analyze", json={"text": text})
        assert response.status_code == 200, response.text
        body = response.json()
        # The live answer is VADER's (the main node), tagged with the experiment.
        assert body["compound"] is not None
        assert (body["variant"], body["experiment"]) == (None, "sent-shadow")
    batch = client.post("/api/v1/sentiment/batch", json={"texts": texts, "user_id": "u1"})
    assert batch.status_code == 200
    deadline = time.monotonic() + 30
    report = _experiment(client, "sent-shadow")
    while report["shadow"]["compared"] < 2 * len(texts) and time.monotonic() < deadline:
        time.sleep(0.2)
        report = _experiment(client, "sent-shadow")
    shadow = report["shadow"]
    assert shadow["compared"] >= 2 * len(texts), report
    assert 0.0 <= shadow["agreement_rate"] <= 1.0
    assert shadow["errors"] == 0 and shadow["timeouts"] == 0
    arms = {arm["arm"]: arm for arm in report["arms"]}
    assert arms["v2"]["role"] == "candidate" and arms["v2"]["requests"] >= 6
    assert arms["default"]["requests"] >= 6
    assert arms["v2"]["latency_p95_s"] is not None


def test_experiment_list_and_unknown_experiment(
    experiments_app: None, client: httpx.Client
) -> None:
    listed = client.get("/api/v1/experiments").json()["experiments"]
    assert {(e["name"], e["task"], e["mode"]) for e in listed} == {
        ("mod-ab", "moderation", "ab"),
        ("sent-shadow", "sentiment", "shadow"),
    }
    missing = client.get("/api/v1/experiments/nope")
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert (error["code"], error["field"]) == ("experiment_not_found", "name")
    assert "mod-ab" in error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/moderation/text", {"text": "hi"}),
        ("/api/v1/moderation/batch", {"texts": ["hi"]}),
        ("/api/v1/moderation/moderate", {"content": "hi"}),
        ("/api/v1/sentiment/analyze", {"text": "hi"}),
    ],
)
def test_a_too_long_user_id_is_a_422_naming_user_id(
    experiments_app: None, client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    response = client.post(path, json={**body, "user_id": "u" * 129})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "user_id"
