"""Every route and every gRPC method needs a valid key, whatever prefix the app is mounted under;
only liveness and the docs are public. Scopes: reviews need moderator, the health detail operator.

Walks the built app's routes (and the AIService descriptor) rather than a list, so a route added
later is covered without touching this file.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from deployments.ingress.app import build_fastapi_app
from deployments.ingress.auth import PUBLIC_PATHS, AuthError, route_path
from deployments.ingress.deployment import Ingress
from deployments.ingress.deps import require_api_key
from deployments.ingress.grpc import is_local_peer, moderate_content
from deployments.protos import ai_service_pb2 as pb
from tests.unit.deployments.ingress.fakes import (
    CLIENT_KEY,
    TEST_KEY,
    FakeInfo,
    FakeNode,
    fake_state,
)
from tests.unit.deployments.ingress.test_grpc import FakeContext

PREFIX = "/sp"
DECISION_ID = "0" * 32


def mounted(app: FastAPI, prefix: str) -> Any:
    """The app as Ray Serve's proxy mounts it under ``route_prefix``: ``root_path`` = prefix,
    ``path`` keeps the full path (ray/serve/_private/proxy.py, set_root_path)."""

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            assert scope["path"].startswith(prefix), "the proxy routes only its prefix here"
            scope = {**scope, "root_path": scope.get("root_path", "") + prefix}
        await app(scope, receive, send)

    return proxy


def concrete(path: str) -> str:
    """A request path for a route template: every ``{param}`` gets a plausible value."""
    return re.sub(r"\{[^}]+\}", DECISION_ID, path)


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, API routes and docs alike.

    ``iter_route_contexts`` flattens included routers (FastAPI keeps them as lazy
    ``_IncludedRouter`` entries in ``app.routes``).
    """
    pairs = []
    for route in iter_route_contexts(app.routes):
        for method in sorted(route.methods or ()):
            if method != "HEAD" and route.path:
                pairs.append((method, concrete(route.path)))
    return pairs


@pytest.fixture
def app() -> FastAPI:
    moderation = FakeNode("TextModeration", info=FakeInfo(name="fake", version="m1", device="cpu"))
    return build_fastapi_app(fake_state({"moderation": moderation}))


@pytest.fixture(params=["", PREFIX], ids=["root", "route_prefix"])
def prefix(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anonymous(app: FastAPI, prefix: str) -> Iterator[TestClient]:
    with TestClient(mounted(app, prefix) if prefix else app) as client:
        yield client


def test_the_walk_sees_every_router(app: FastAPI) -> None:
    paths = {path for _, path in every_route(app)}
    assert len(paths) >= 20, "the walk must see the whole app, not an empty list"
    assert PUBLIC_PATHS <= paths, "every allow-listed path is a real route"
    assert f"/api/v1/moderation/{DECISION_ID}/review" in paths


def test_every_route_needs_a_key_except_liveness_and_docs(
    app: FastAPI, anonymous: TestClient, prefix: str
) -> None:
    for method, path in every_route(app):
        for headers in ({}, {"X-API-Key": "wrong-key"}, {"X-API-Key": " "}):
            # An empty JSON object: without the key check first, POSTs would answer 422.
            body = {} if method in ("POST", "PUT", "PATCH") else None
            response = anonymous.request(method, prefix + path, headers=headers, json=body)
            if path in PUBLIC_PATHS:
                assert response.status_code == 200, (method, prefix + path)
                continue
            assert response.status_code == 401, (method, prefix + path, headers)
            error = response.json()["error"]
            assert error["field"] == "X-API-Key", (method, path)
            assert error["code"] == (
                "invalid_api_key" if headers.get("X-API-Key", " ").strip() else "missing_api_key"
            )


def test_near_misses_of_public_paths_need_a_key(anonymous: TestClient, prefix: str) -> None:
    for path in ("/health/", "/docs/x", "/openapi.json/", "/healthz", "/api/v1/health"):
        response = anonymous.get(prefix + path)
        assert response.status_code == 401, path


def test_a_valid_key_passes_under_the_prefix(app: FastAPI, prefix: str) -> None:
    headers = {"X-API-Key": CLIENT_KEY}
    with TestClient(mounted(app, prefix) if prefix else app, headers=headers) as client:
        invalid = client.post(prefix + "/api/v1/moderation/text", json={})
        liveness = client.get(prefix + "/health")
    assert invalid.status_code == 422, "past the guard, the body is checked"
    assert liveness.json() == {"status": "ok"}


def test_route_path_strips_the_mount_point_only() -> None:
    assert route_path({"path": "/sp/health", "root_path": "/sp"}) == "/health"
    assert route_path({"path": "/health", "root_path": "/sp"}) == "/health"  # older servers
    assert route_path({"path": "/spx/health", "root_path": "/sp"}) == "/spx/health"
    assert route_path({"path": "/sp", "root_path": "/sp"}) == ""


def test_scopes_moderator_reviews_operator_health_detail(app: FastAPI) -> None:
    review = {"verdict": "approve", "reviewer_id": "mod-1"}
    with TestClient(app, headers={"X-API-Key": CLIENT_KEY}) as client:
        refused = client.post(f"/api/v1/moderation/{DECISION_ID}/review", json=review)
        invalid_body = client.post(f"/api/v1/moderation/{DECISION_ID}/review", json={})
        lookup = client.get(f"/api/v1/moderation/decisions/{DECISION_ID}")
        detail = client.get("/api/v1/health")
    with TestClient(app, headers={"X-API-Key": TEST_KEY}) as client:
        allowed = client.post(f"/api/v1/moderation/{DECISION_ID}/review", json=review)
        report = client.get("/api/v1/health")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "missing_scope"
    assert "'moderator'" in refused.json()["error"]["message"]
    assert CLIENT_KEY not in refused.text, "the key id is named, never the key"
    assert invalid_body.status_code == 403, "the scope is checked before the body"
    assert lookup.status_code == 403
    assert detail.status_code == 403 and "'operator'" in detail.json()["error"]["message"]
    assert allowed.status_code == 404, "a moderator key reaches the review (no such decision)"
    assert report.status_code == 200 and report.json()["nodes"]["moderation"]["status"] == "ok"


def test_require_api_key_checks_the_key_itself(app: FastAPI) -> None:
    """Defence in depth: the dependency refuses a wrong key even without the middleware."""

    class FakeRequest:
        def __init__(self) -> None:
            self.app = app

    with pytest.raises(AuthError) as missing:
        require_api_key(FakeRequest(), None)  # type: ignore[arg-type]
    with pytest.raises(AuthError) as wrong:
        require_api_key(FakeRequest(), "wrong-key")  # type: ignore[arg-type]
    identity = require_api_key(FakeRequest(), CLIENT_KEY)  # type: ignore[arg-type]
    assert (missing.value.status, wrong.value.status) == (401, 401)
    assert identity.allows("client") and not identity.allows("moderator")
    assert len(identity.key_id) == 8 and identity.key_id not in CLIENT_KEY


def grpc_methods() -> list[str]:
    return [method.name for method in pb.DESCRIPTOR.services_by_name["AIService"].methods]


@pytest.mark.parametrize("method", grpc_methods())
def test_every_grpc_method_needs_a_key(method: str) -> None:
    # The Ingress class's own method, on a stand-in with its state (no Ray replica).
    rpc = getattr(Ingress.func_or_class, method)  # type: ignore[attr-defined]
    servicer = SimpleNamespace(state=fake_state())
    descriptor = pb.DESCRIPTOR.services_by_name["AIService"].methods_by_name[method]
    request = getattr(pb, descriptor.input_type.name)()
    for key in (None, "wrong-key", ""):
        context = FakeContext(key)
        reply = asyncio.run(rpc(servicer, request, context))
        assert context.code == grpc.StatusCode.UNAUTHENTICATED, (method, key)
        assert reply == getattr(pb, descriptor.output_type.name)(), "nothing answered"


def test_grpc_from_another_host_is_refused_when_loopback_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOCIALPLAY_GRPC_LOOPBACK_ONLY", "1")
    moderation = FakeNode("TextModeration", predict_many=lambda texts: [])
    state = fake_state({"moderation": moderation})
    request = pb.ModerationRequest(content="hello")
    remote = FakeContext(TEST_KEY, peer="ipv4:10.1.2.3:40000")
    asyncio.run(moderate_content(state, request, remote))  # type: ignore[arg-type]
    assert remote.code == grpc.StatusCode.PERMISSION_DENIED
    assert "SOCIALPLAY_GRPC_LOOPBACK_ONLY" in remote.details
    assert moderation.methods["predict_many"].calls == [], "a remote call reaches no node"
    for peer in ("ipv4:127.0.0.1:1", "ipv6:[::1]:1", "ipv6:[::ffff:127.0.0.1]:1", "unix:/s"):
        assert is_local_peer(peer), peer
    for peer in ("ipv4:10.1.2.3:1", "ipv6:[2001:db8::1]:1", "ipv4:0.0.0.0:1", "garbage"):
        assert not is_local_peer(peer), peer
