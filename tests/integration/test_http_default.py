"""The graph as `serve_config.yaml` ships it (the shipped heads), deployed declaratively as
``serve deploy`` does, over HTTP: routes, keys, limits and bad input; then a ``user_config``
change applied live without restarting replicas (the operator path)."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.conftest import OTHER_API_KEY, TEST_API_KEY, health_detail

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "socialplay"
# Smaller limits than serve_config.yaml's, so the limit tests send small bodies.
LIMITS = {"max_body_bytes": 65_536, "max_text_chars": 2_000, "max_batch_texts": 8}
BATCHING = {"max_batch_size": 8, "batch_wait_timeout_s": 0.01}
# test_http_images.py serves the image nodes; here they would only add replicas' start-up.
IMAGE_NODES = {
    "nsfw_model": "NsfwDetector",
    "tagger_model": "ImageTagger",
    "detector_model": "ObjectDetector",
}
ABUSIVE = "you are a fucking idiot and a piece of shit"
CLEAN = "have a lovely day, the park looks beautiful this morning"


def _load_config(port: int) -> dict[str, Any]:
    """serve_config.yaml as committed, but for the test cluster's size, the limits above and
    no image nodes."""
    config = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text(encoding="utf-8"))
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    application = config["applications"][0]
    for arg, deployment_name in IMAGE_NODES.items():
        application["args"][arg]["enabled"] = False
        application["deployments"] = [
            d for d in application["deployments"] if d["name"] != deployment_name
        ]
    deployments = {d["name"]: d for d in application["deployments"]}
    # Two logical CPUs' worth of deployments must fit the test cluster beside other apps.
    for deployment in deployments.values():
        deployment["ray_actor_options"]["num_cpus"] = 0.1
    deployments["Ingress"]["user_config"]["limits"].update(LIMITS)
    deployments["TextModeration"]["user_config"]["batching"] = dict(BATCHING)
    return dict(config)


def _deploy(config: dict[str, Any], base_url: str) -> None:
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    # Not `_blocking`: Ray's own wait is a fixed 60 s, and a dozen replicas on two busy cores
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


@pytest.fixture(scope="module", autouse=True)
def config(serve_port: int, base_url: str) -> Iterator[dict[str, Any]]:
    from ray import serve

    loaded = _load_config(serve_port)
    _deploy(loaded, base_url)
    yield loaded
    serve.delete(APP)


def test_health_names_each_node_model_version_and_device(base_url: str) -> None:
    public = httpx.get(f"{base_url}/health")
    assert public.status_code == 200 and public.json() == {"status": "ok"}
    response = httpx.get(f"{base_url}/api/v1/health", headers={"X-API-Key": TEST_API_KEY})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["api_keys"] == "configured"
    moderation = body["nodes"]["moderation"]
    # The heads committed in the package, loaded with no download and no registry.
    assert moderation["name"] == "heads-moderation"
    assert moderation["version"].startswith("shipped-") and moderation["device"] == "cpu"
    assert moderation["labels"] == ["hate_speech", "offensive"]
    assert moderation["batching"] == BATCHING
    assert "degraded_reason" not in moderation
    assert body["nodes"]["sentiment"]["name"] == "heads-sentiment"


def test_moderation_text_scores_abuse_above_clean_text(client: httpx.Client) -> None:
    abusive_response = client.post("/api/v1/moderation/text", json={"text": ABUSIVE})
    assert abusive_response.status_code == 200, abusive_response.text
    abusive = abusive_response.json()
    clean = client.post("/api/v1/moderation/text", json={"text": CLEAN}).json()
    assert abusive["scores"]["offensive"] > clean["scores"]["offensive"]
    assert set(abusive["scores"]) == {"hate_speech", "offensive"}, "the shipped head's labels"
    assert abusive["action"] in {"flag_for_review", "reject"} and abusive["is_safe"] is False
    assert abusive["flagged_categories"] == ["offensive"], "swearing is not hate speech"
    assert clean["action"] == "approve" and clean["is_safe"] is True
    assert clean["overall"] == pytest.approx(max(clean["scores"].values()))
    assert clean["model"]["name"] == "heads-moderation"
    assert clean["degraded"] is False


def test_second_configured_key_is_accepted(base_url: str) -> None:
    response = httpx.post(
        f"{base_url}/api/v1/moderation/text",
        json={"text": CLEAN},
        headers={"X-API-Key": OTHER_API_KEY},
    )
    assert response.status_code == 200


def test_moderate_post_and_batch(client: httpx.Client) -> None:
    post = client.post("/api/v1/moderation/moderate", json={"content": ABUSIVE}).json()
    assert post["is_safe"] is False
    assert post["text_moderation"]["scores"] == post["scores"]
    assert post["image_moderation"] == []
    batch = client.post("/api/v1/moderation/batch", json={"texts": [CLEAN, ABUSIVE, CLEAN]})
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert [r["is_safe"] for r in results] == [True, False, True]


def test_moderate_post_with_images_says_images_are_not_enabled(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/moderation/moderate",
        json={"content": CLEAN, "images": ["https://example.com/a.jpg"]},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "images" and error["code"] == "feature_not_enabled"
    assert "not enabled" in error["message"]


def test_sentiment_routes(client: httpx.Client) -> None:
    love = client.post("/api/v1/sentiment/analyze", json={"text": "I love this"}).json()
    hate = client.post("/api/v1/sentiment/analyze", json={"text": "I hate this"}).json()
    assert love["label"] == "positive" and hate["label"] == "negative"
    assert love["scores"]["positive"] > hate["scores"]["positive"]
    assert set(love["scores"]) == {"positive", "negative", "neutral"}
    assert love["model"]["name"] == "heads-sentiment" and 0 <= love["confidence"] <= 1
    batch = client.post(
        "/api/v1/sentiment/batch", json={"texts": ["I love this", "I hate this"]}
    ).json()
    assert [r["label"] for r in batch["results"]] == ["positive", "negative"]


def test_aspect_sentiment_labels_each_aspect_of_a_mixed_post(client: httpx.Client) -> None:
    text = "The food was great but the service was awful."
    response = client.post(
        "/api/v1/sentiment/aspects", json={"text": text, "aspects": ["food", "service", "wine"]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["version"].startswith("shipped-") and body["degraded"] is False
    found = [(a["aspect"], a["found"], a["label"], a["spans"]) for a in body["aspects"]]
    assert found == [
        ("food", True, "positive", [[4, 8]]),
        ("service", True, "negative", [[27, 34]]),
        ("wine", False, None, []),
    ]
    both = client.post(
        "/api/v1/sentiment/aspects",
        json={"text": text, "aspects": ["food"], "categories": ["food"]},
    )
    assert both.status_code == 422 and both.json()["error"]["field"] == "categories"


def _coalesced(client: httpx.Client) -> dict[str, float]:
    nodes = client.get("/api/v1/health").json()["coalescing"]["nodes"]
    empty = {"batches_sent": 0, "items_sent": 0, "mean_batch_size": 0.0}
    return dict(nodes.get("TextModeration", empty))


def test_concurrent_requests_are_batched_and_answered_in_order(client: httpx.Client) -> None:
    texts = [CLEAN if i % 2 else ABUSIVE for i in range(24)]
    before = _coalesced(client)

    def score(text: str) -> bool:
        response = client.post("/api/v1/moderation/text", json={"text": text})
        assert response.status_code == 200
        return bool(response.json()["is_safe"])

    with ThreadPoolExecutor(max_workers=12) as pool:
        verdicts = list(pool.map(score, texts))
    assert verdicts == [text == CLEAN for text in texts]
    # The ingress sent these texts to the node in shared predict_many calls, not one each.
    after = _coalesced(client)
    items = after["items_sent"] - before["items_sent"]
    batches = after["batches_sent"] - before["batches_sent"]
    assert items == 24
    assert 1 <= batches < items


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [({}, 401, "missing_api_key"), ({"X-API-Key": "wrong"}, 401, "invalid_api_key")],
)
@pytest.mark.parametrize(
    "route",
    [
        "/api/v1/moderation/text",
        "/api/v1/moderation/moderate",
        "/api/v1/moderation/batch",
        "/api/v1/sentiment/analyze",
        "/api/v1/sentiment/batch",
    ],
)
def test_every_api_route_needs_a_valid_key(
    base_url: str, route: str, headers: dict[str, str], status: int, code: str
) -> None:
    response = httpx.post(f"{base_url}{route}", json={"text": CLEAN}, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == "X-API-Key"


BAD_BODIES = [
    ("/api/v1/moderation/text", {"text": ""}, 422, "text"),
    ("/api/v1/moderation/text", {"text": "   "}, 422, "text"),
    ("/api/v1/moderation/text", {"text": 42}, 422, "text"),
    ("/api/v1/moderation/text", {"text": None}, 422, "text"),
    ("/api/v1/moderation/text", {}, 422, "text"),
    ("/api/v1/moderation/text", {"text": "ok", "extra": 1}, 422, "extra"),
    ("/api/v1/moderation/text", ["text"], 422, "body"),
    ("/api/v1/moderation/text", {"text": "x" * 2_001}, 422, "text"),
    ("/api/v1/moderation/moderate", {"content": ""}, 422, "content"),
    ("/api/v1/moderation/moderate", {"content": "ok", "images": "a.jpg"}, 422, "images"),
    ("/api/v1/moderation/batch", {"texts": []}, 422, "texts"),
    ("/api/v1/moderation/batch", {"texts": ["ok"] * 9}, 422, "texts"),
    ("/api/v1/moderation/batch", {"texts": ["ok", ""]}, 422, "texts[1]"),
    ("/api/v1/moderation/batch", {"texts": ["ok", 3]}, 422, "texts[1]"),
    ("/api/v1/moderation/batch", {"texts": "ok"}, 422, "texts"),
    ("/api/v1/sentiment/analyze", {"text": ""}, 422, "text"),
    ("/api/v1/sentiment/analyze", {"text": ["a"]}, 422, "text"),
    ("/api/v1/sentiment/batch", {"texts": ["ok"] * 9}, 422, "texts"),
    ("/api/v1/sentiment/batch", {"texts": [""]}, 422, "texts[0]"),
]


@pytest.mark.parametrize(("route", "body", "status", "field"), BAD_BODIES)
def test_bad_bodies_get_a_4xx_naming_the_field(
    client: httpx.Client, route: str, body: object, status: int, field: str
) -> None:
    response = client.post(route, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field
    assert error["message"]


def test_invalid_json_is_a_400(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/moderation/text",
        content=b'{"text": "unterminated',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_json",
        "message": "the body is not valid JSON",
        "field": "body",
    }


def test_two_megabyte_body_is_a_413_and_the_service_keeps_serving(client: httpx.Client) -> None:
    big = {"text": "a" * (2 * 1024 * 1024)}
    response = client.post("/api/v1/moderation/text", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        # No Content-Length: the limit must hold for a streamed body too.
        yield b'{"text": "'
        for _ in range(40):
            yield b"a" * 4096
        yield b'"}'

    streamed = client.post(
        "/api/v1/moderation/text", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    after = client.post("/api/v1/moderation/text", json={"text": CLEAN})
    assert after.status_code == 200 and after.json()["is_safe"] is True


def test_unknown_route_and_wrong_method_are_json_errors(client: httpx.Client) -> None:
    missing = client.post("/api/v1/nothing-here", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "http_error"
    wrong_method = client.get("/api/v1/moderation/text")
    assert wrong_method.status_code == 405


def test_openapi_schema_and_docs(base_url: str) -> None:
    schema = httpx.get(f"{base_url}/openapi.json").json()
    assert "/api/v1/moderation/text" in schema["paths"]
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]
    assert httpx.get(f"{base_url}/docs").status_code == 200


def test_cors_allows_only_configured_origins(base_url: str) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key,content-type",
    }
    allowed = httpx.options(
        f"{base_url}/api/v1/moderation/text",
        headers={"Origin": "http://app.example", **preflight},
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://app.example"
    refused = httpx.options(
        f"{base_url}/api/v1/moderation/text",
        headers={"Origin": "http://evil.example", **preflight},
    )
    assert "access-control-allow-origin" not in refused.headers


def test_one_text_encoder_serves_the_heads_and_smart_replies(base_url: str) -> None:
    nodes = health_detail(base_url)["nodes"]
    # The heads and smart replies embed through the Embedder, holding no MiniLM of their own.
    for node in ("moderation", "sentiment", "replies"):
        assert nodes[node]["text_vectors"]["state"] == "shared encoder", node


# Last in this module: it changes the running app's user_config.
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
