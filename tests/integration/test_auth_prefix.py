"""Authentication does not depend on the URL prefix: the default graph under ``route_prefix: /sp``.

Ray Serve mounts the app there by setting ``root_path`` and keeping the full path; every route
of the deployed app (read from its own ``/sp/openapi.json``) must answer 401 without a key and
with a wrong one, before its body is parsed. One deploy for the module.

Also: Ray's gRPC proxy refuses a message over the HTTP body limit (``RAY_SERVE_GRPC_MAX_MESSAGE_
SIZE``, set by the conftest as ``make serve`` sets it) before any key check or app code.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from ray import serve

from deployments.app import build_graph
from deployments.protos import ai_service_pb2 as pb
from deployments.protos.ai_service_pb2_grpc import AIServiceStub
from tests.integration.conftest import (
    GRPC_MAX_MESSAGE_BYTES,
    OTHER_API_KEY,
    TEST_API_KEY,
    embedded_args,
    undeploy,
)

pytestmark = pytest.mark.integration

APP = "auth-prefix"
PREFIX = "/sp"
PUBLIC = {"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}
SMALL = {"ray_actor_options": {"num_cpus": 0.1}}


@pytest.fixture(scope="module")
def app_url(base_url: str) -> Iterator[str]:
    graph = build_graph(
        embedded_args(), dict.fromkeys(("Ingress", "TextModeration", "Sentiment"), SMALL)
    )
    serve.run(graph, name=APP, route_prefix=PREFIX, logging_config={"enable_access_log": False})
    url = base_url + PREFIX
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/health", timeout=5).json() != {"status": "ok"}:
        assert time.monotonic() < deadline, f"{APP} was not healthy under {PREFIX} within 60 s"
        time.sleep(0.5)
    yield url
    undeploy(APP)


def test_every_route_under_the_prefix_needs_a_key(app_url: str) -> None:
    spec = httpx.get(f"{app_url}/openapi.json", timeout=10).json()
    operations = [
        (method.upper(), re.sub(r"\{[^}]+\}", "0" * 32, path))
        for path, item in spec["paths"].items()
        for method in item
    ]
    assert len(operations) >= 10, "the walk must see the deployed app's routes"
    with httpx.Client(base_url=app_url, timeout=30) as client:
        for method, path in operations:
            for headers in ({}, {"X-API-Key": "wrong-key"}):
                # An empty JSON object: a route that parsed it before the key check would 422.
                body = {} if method == "POST" else None
                response = client.request(method, path, headers=headers, json=body)
                if path in PUBLIC:
                    assert response.status_code == 200, (method, path)
                    continue
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.json()["error"]["field"] == "X-API-Key"
        for path in ("/docs", "/openapi.json"):
            assert client.get(path).status_code == 200, f"{path} is public"


def test_a_valid_key_is_served_under_the_prefix(app_url: str) -> None:
    with httpx.Client(base_url=app_url, timeout=30) as client:
        verdict = client.post(
            "/api/v1/moderation/text",
            json={"text": "have a lovely day"},
            headers={"X-API-Key": OTHER_API_KEY},
        )
        detail_as_client = client.get("/api/v1/health", headers={"X-API-Key": OTHER_API_KEY})
        detail = client.get("/api/v1/health", headers={"X-API-Key": TEST_API_KEY})
        public = client.get("/health")
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["action"] == "approve"
    assert detail_as_client.status_code == 403, "the health detail needs the operator scope"
    assert detail.status_code == 200 and detail.json()["nodes"]["moderation"]["status"] == "ok"
    assert public.json() == {"status": "ok"}, "public liveness names nothing else"


def test_grpc_messages_over_the_body_limit_are_refused(grpc_target: str) -> None:
    request = pb.ModerationRequest(content="x" * (GRPC_MAX_MESSAGE_BYTES + 1024))
    metadata = (("x-api-key", TEST_API_KEY), ("application", APP))
    with grpc.insecure_channel(grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            AIServiceStub(channel).ModerateContent(request, metadata=metadata, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
