"""Transformer checkpoints behind the graph, and the ingress's fallbacks when nodes fail."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ray import serve

from configs.app import AppArgs
from deployments.app import build_graph
from deployments.ingress.deployment import Ingress
from models.device import checkpoint_version
from tests.integration.conftest import deploy, health_detail, undeploy

pytestmark = pytest.mark.integration

LONG_TEXT = " ".join(["the weather today is calm and the market is open"] * 40)


@pytest.fixture(scope="module")
def transformer_app(
    base_url: str, tiny_moderation_checkpoint: Path, tiny_sentiment_checkpoint: Path
) -> Iterator[None]:
    args = AppArgs.model_validate(
        {
            "moderation_model": {
                "kind": "transformer",
                "path": str(tiny_moderation_checkpoint),
                "stride": 8,
            },
            "sentiment_model": {
                "kind": "transformer",
                "path": str(tiny_sentiment_checkpoint),
                "stride": 8,
            },
        }
    )
    small = {"ray_actor_options": {"num_cpus": 0.1}}
    graph = build_graph(args, {"Ingress": small, "TextModeration": small, "Sentiment": small})
    deploy(graph, base_url)
    yield
    undeploy()


def test_transformer_nodes_report_checkpoint_labels_and_version(
    transformer_app: None, base_url: str, tiny_moderation_checkpoint: Path
) -> None:
    nodes = health_detail(base_url)["nodes"]
    id2label = json.loads((tiny_moderation_checkpoint / "config.json").read_text())["id2label"]
    expected = [id2label[str(i)] for i in range(len(id2label))]
    assert nodes["moderation"]["labels"] == expected
    assert nodes["moderation"]["version"] == checkpoint_version(tiny_moderation_checkpoint)
    assert nodes["moderation"]["device"] == "cpu"
    assert nodes["sentiment"]["labels"] == ["negative", "positive"]


def test_transformer_moderation_over_http(transformer_app: None, client: httpx.Client) -> None:
    single = client.post("/api/v1/moderation/text", json={"text": "you are awful"})
    assert single.status_code == 200, single.text
    body = single.json()
    assert set(body["scores"]) == {
        "toxic",
        "severe_toxic",
        "obscene",
        "threat",
        "insult",
        "identity_hate",
    }
    assert all(0.0 <= s <= 1.0 for s in body["scores"].values())
    assert body["overall"] == pytest.approx(max(body["scores"].values()))
    # A text far beyond the 64-token window is windowed, not truncated or refused.
    long = client.post("/api/v1/moderation/text", json={"text": LONG_TEXT})
    assert long.status_code == 200
    # The same text alone and inside a batch gets the same scores (padding is masked).
    batch = client.post(
        "/api/v1/moderation/batch", json={"texts": ["hello there", "you are awful", LONG_TEXT]}
    ).json()["results"]
    assert batch[1]["scores"] == pytest.approx(body["scores"], abs=1e-5)
    assert batch[2]["scores"] == pytest.approx(long.json()["scores"], abs=1e-5)


def test_transformer_sentiment_over_http(transformer_app: None, client: httpx.Client) -> None:
    response = client.post("/api/v1/sentiment/analyze", json={"text": "I love this"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scores"]["neutral"] is None, "binary checkpoint: no neutral class"
    assert body["scores"]["positive"] + body["scores"]["negative"] == pytest.approx(1.0)
    assert body["label"] in {"positive", "negative"}
    assert body["model"]["name"] == Path(body["model"]["name"]).name and not body["degraded"]


@serve.deployment(name="BrokenModeration")
class BrokenModeration:
    """A node whose model always fails."""

    async def predict(self, text: str) -> Any:
        raise RuntimeError("model crashed")

    async def predict_many(self, texts: list[str]) -> Any:
        raise RuntimeError("model crashed")

    async def info(self) -> Any:
        raise RuntimeError("model crashed")


@serve.deployment(name="StuckSentiment")
class StuckSentiment:
    """A node that never answers in time."""

    async def predict(self, text: str) -> Any:
        await asyncio.sleep(30)

    async def predict_many(self, texts: list[str]) -> Any:
        await asyncio.sleep(30)

    async def info(self) -> Any:
        await asyncio.sleep(30)


@pytest.fixture(scope="module")
def broken_app(base_url: str) -> Iterator[None]:
    ingress_config = {"timeouts": {"moderation_s": 2.0, "sentiment_s": 0.5, "health_s": 0.5}}
    graph = Ingress.options(  # type: ignore[attr-defined]
        user_config=ingress_config, ray_actor_options={"num_cpus": 0.1}
    ).bind(
        moderation=BrokenModeration.options(ray_actor_options={"num_cpus": 0.1}).bind(),
        sentiment=StuckSentiment.options(ray_actor_options={"num_cpus": 0.1}).bind(),
    )
    serve.run(graph, name="socialplay", route_prefix="/")
    yield
    undeploy()


def test_failing_moderation_node_falls_back_and_says_so(
    broken_app: None, client: httpx.Client
) -> None:
    abusive = client.post("/api/v1/moderation/text", json={"text": "you fucking idiot"})
    assert abusive.status_code == 200
    body = abusive.json()
    assert body["degraded"] is True
    assert body["degraded_reason"].startswith("node failed")
    assert body["model"]["name"] == "alt-profanity-check"
    assert body["is_safe"] is False, "the fallback model still judges the text"
    batch = client.post("/api/v1/moderation/batch", json={"texts": ["hi", "hello"]}).json()
    assert all(r["degraded"] for r in batch["results"])


def test_stuck_sentiment_node_times_out_to_vader(broken_app: None, client: httpx.Client) -> None:
    response = client.post("/api/v1/sentiment/analyze", json={"text": "I love this"})
    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] is True and body["degraded_reason"] == "node timed out"
    assert body["model"]["name"] == "vader" and body["label"] == "positive"


def test_health_reports_unavailable_nodes(broken_app: None, base_url: str) -> None:
    health = health_detail(base_url)
    assert health["status"] == "degraded"
    assert health["nodes"]["moderation"]["status"] == "unavailable"
    assert health["nodes"]["sentiment"] == {"status": "unavailable", "reason": "node timed out"}
