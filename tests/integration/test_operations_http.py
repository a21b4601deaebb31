"""Operations over HTTP: circuit breakers, metrics export, X-Request-ID and JSON replica logs.

The graph has a moderation node the test can break and heal (``FlakyModeration``) and a real
Sentiment node (batched, so it reports batch sizes).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ray import serve

from configs.nodes import BatchingConfig, SentimentModelSpec
from deployments.ingress.deployment import Ingress
from deployments.nodes.text_classifier import text_classifier_deployment
from models.answers import Answer, ModelInfo, ModelNodeInfo, ModelRef
from tests.integration.conftest import health_detail, undeploy

pytestmark = pytest.mark.integration

APP = "socialplay"
OPEN_S = 3.0
MARKER = f"zebra{uuid.uuid4().hex[:12]}"  # a text that must never reach our logs


@serve.deployment(name="FlakyModeration")
class FlakyModeration:
    """A moderation node that fails while ``broken``; counts the calls that reach it."""

    def __init__(self) -> None:
        self.broken = True
        self.calls = 0

    def set_broken(self, broken: bool) -> None:
        self.broken = broken

    def calls_made(self) -> int:
        return self.calls

    def _answer(self) -> Answer[dict[str, float]]:
        self.calls += 1
        if self.broken:
            raise RuntimeError("model crashed")
        return Answer({"offensive": 0.01}, ModelRef(name="flaky", version="7", device="cpu"))

    async def predict(self, text: str) -> Any:
        return self._answer()

    async def predict_many(self, texts: list[str]) -> Any:
        return [self._answer() for _ in texts]

    def info(self) -> ModelNodeInfo:
        model = ModelInfo(name="flaky", version="7", device="cpu", labels=("offensive",))
        return ModelNodeInfo(model=model, batching=BatchingConfig(), replica_id="flaky-1")


@pytest.fixture(scope="module")
def flaky_app(base_url: str) -> Iterator[Any]:
    ingress_config = {
        "timeouts": {"health_s": 5.0},
        "circuit_breaker": {"failure_threshold": 2, "open_s": OPEN_S, "half_open_max_calls": 1},
    }
    small = {"num_cpus": 0.1}
    graph = Ingress.options(  # type: ignore[attr-defined]
        user_config=ingress_config, ray_actor_options=small
    ).bind(
        moderation=FlakyModeration.options(ray_actor_options=small).bind(),
        sentiment=text_classifier_deployment("sentiment")
        .options(ray_actor_options=small)
        .bind("sentiment", SentimentModelSpec(kind="vader")),
    )
    # JSON replica logs, as serve_config.yaml sets them (conftest's `deploy` sets TEXT).
    serve.run(
        graph,
        name=APP,
        route_prefix="/",
        logging_config={"encoding": "JSON", "enable_access_log": False},
    )
    deploy_wait(base_url)
    yield serve.get_deployment_handle("FlakyModeration", app_name=APP)
    undeploy(APP)


def deploy_wait(base_url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the app did not answer /health within 60 s")


def moderate(client: httpx.Client, text: str, **headers: str) -> httpx.Response:
    response = client.post("/api/v1/moderation/text", json={"text": text}, headers=headers)
    assert response.status_code == 200, response.text
    return response


def test_breaker_opens_fails_fast_and_closes_after_a_successful_probe(
    flaky_app: Any, client: httpx.Client, base_url: str
) -> None:
    flaky_app.set_broken.remote(True).result()
    for _ in range(2):
        body = moderate(client, "hello there").json()
        assert body["degraded"] is True
        assert body["degraded_reason"].startswith("node failed")
        assert body["model"]["name"] == "alt-profanity-check", "the fallback answered"
    calls = flaky_app.calls_made.remote().result()
    assert calls == 2

    health = health_detail(base_url)
    assert health["circuit_breakers"]["moderation"]["state"] == "open"
    assert health["circuit_breakers"]["sentiment"]["state"] == "closed"
    assert health["status"] == "degraded"

    # Open: the fallback answers at once and the node is not called.
    body = moderate(client, "hello again").json()
    assert body["degraded"] is True and body["degraded_reason"] == "circuit open"
    batch = client.post("/api/v1/moderation/batch", json={"texts": ["a b", "c d"]}).json()
    assert [r["degraded_reason"] for r in batch["results"]] == ["circuit open"] * 2
    assert flaky_app.calls_made.remote().result() == calls, "no call while the circuit is open"

    # The node heals; after open_s one probe goes through, succeeds and closes the breaker.
    flaky_app.set_broken.remote(False).result()
    deadline = time.monotonic() + OPEN_S + 30
    while True:
        body = moderate(client, "hello once more").json()
        if not body["degraded"]:
            break
        assert body["degraded_reason"] == "circuit open"
        assert time.monotonic() < deadline, "the breaker never let a probe through"
        time.sleep(0.3)
    assert body["model"] == {"name": "flaky", "version": "7", "device": "cpu"}
    assert flaky_app.calls_made.remote().result() == calls + 1, "exactly one probe call"
    health = health_detail(base_url)
    assert health["circuit_breakers"]["moderation"] == {
        "state": "closed",
        "consecutive_failures": 0,
    }
    assert not moderate(client, "and again").json()["degraded"]


def test_request_id_is_echoed_or_generated_on_every_answer(
    flaky_app: Any, base_url: str, client: httpx.Client
) -> None:
    sent = f"ops-{uuid.uuid4()}"
    ok = client.post(
        "/api/v1/sentiment/analyze", json={"text": "I love it"}, headers={"X-Request-ID": sent}
    )
    assert ok.status_code == 200 and ok.headers["x-request-id"] == sent
    unauthenticated = httpx.post(
        f"{base_url}/api/v1/sentiment/analyze",
        json={"text": "I love it"},
        headers={"X-Request-ID": sent},
    )
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["x-request-id"] == sent
    invalid = client.post(
        "/api/v1/sentiment/analyze", json={"text": "   "}, headers={"X-Request-ID": sent}
    )
    assert invalid.status_code == 422 and invalid.headers["x-request-id"] == sent
    # No id sent: the proxy makes one per request and returns it.
    generated = [
        client.post("/api/v1/sentiment/analyze", json={"text": "fine"}).headers["x-request-id"],
        httpx.post(f"{base_url}/api/v1/sentiment/analyze", json={}).headers["x-request-id"],
    ]
    assert all(generated) and generated[0] != generated[1]


def _ingress_log_lines() -> list[str]:
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
    lines: list[str] = []
    for path in logs.glob(f"replica_{APP}_Ingress_*"):
        lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    return lines


def test_json_replica_logs_carry_the_request_id_and_no_request_text(
    flaky_app: Any, client: httpx.Client
) -> None:
    flaky_app.set_broken.remote(True).result()
    sent = f"ops-log-{uuid.uuid4()}"
    # A failing node makes the ingress log a warning inside this request.
    body = moderate(client, f"{MARKER} says hi", **{"X-Request-ID": sent}).json()
    assert body["degraded"] is True
    flaky_app.set_broken.remote(False).result()

    deadline = time.monotonic() + 30
    ours: list[dict[str, Any]] = []
    while not ours and time.monotonic() < deadline:
        ours = [json.loads(line) for line in _ingress_log_lines() if sent in line]
        time.sleep(0.5)
    assert ours, "no Ingress replica log line carries the request id"
    assert all(record["request_id"] == sent for record in ours)
    assert any("moderation node unavailable" in record["message"] for record in ours)
    assert all(record["application"] == APP for record in ours)
    assert all(record["deployment"].endswith("Ingress") for record in ours)
    assert not any(MARKER in line for line in _ingress_log_lines()), "a text reached the logs"


def _metric_lines(metrics_url: str, name: str) -> list[str]:
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return []
    return [line for line in text.splitlines() if name in line and not line.startswith("#")]


def _total(lines: list[str]) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_node_metrics_reach_the_metrics_export_endpoint(
    flaky_app: Any, client: httpx.Client, metrics_url: str
) -> None:
    for i in range(4):  # distinct texts: a result cache must not answer them
        response = client.post("/api/v1/sentiment/analyze", json={"text": f"I like it {i}"})
        assert response.status_code == 200 and not response.json()["degraded"]
    client.post("/api/v1/sentiment/batch", json={"texts": [f"good {i}" for i in range(6)]})

    deadline = time.monotonic() + 60
    requests: list[str] = []
    batches: list[str] = []
    while time.monotonic() < deadline:
        requests = [
            line
            for line in _metric_lines(metrics_url, "socialplay_node_requests_total")
            if 'node="Sentiment"' in line and 'outcome="ok"' in line
        ]
        batches = [
            line
            for line in _metric_lines(metrics_url, "socialplay_batch_size_count")
            if 'node="Sentiment"' in line
        ]
        # Exported counts lag the calls by a report interval: wait for all of them.
        if batches and _total(requests) >= 5:
            break
        time.sleep(1)
    assert requests, "socialplay_node_requests_total{node=Sentiment} never exported"
    assert batches, "socialplay_batch_size{node=Sentiment} never exported"
    assert _total(requests) >= 5, "4 single calls and 1 batch call were made"
    # The version label is the model's, read from the node's answers.
    assert 'version="unknown"' not in requests[0]
    assert MARKER not in httpx.get(metrics_url, timeout=5).text
