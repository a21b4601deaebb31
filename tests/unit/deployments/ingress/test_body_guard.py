"""Deeply nested JSON bodies: the depth scan, and a 400 naming ``body`` on every JSON route."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deployments.ingress import body_guard
from deployments.ingress.app import build_fastapi_app
from deployments.ingress.body_guard import MAX_JSON_DEPTH, json_depth_over
from tests.unit.deployments.ingress.fakes import TEST_KEY, FakeNode, fake_state

NESTED_ARRAYS = b"[" * 5000 + b"]" * 5000


def _nested(depth: int) -> Any:
    """Objects and arrays alternating, ``depth`` levels deep (json.dumps handles ~1000)."""
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def _nested_text(depth: int) -> bytes:
    """Like ``json.dumps(_nested(depth))``, at any depth."""
    opening = "".join('{"k": ' if level % 2 == 0 else "[" for level in reversed(range(depth)))
    closing = "".join("}" if level % 2 == 0 else "]" for level in range(depth))
    return (opening + "1" + closing).encode()


# ---- the scan -----------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 10, MAX_JSON_DEPTH])
def test_documents_within_the_limit_pass(depth: int) -> None:
    body = _nested_text(depth)
    assert json.loads(body) == _nested(depth)
    assert json_depth_over(body) is None


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 500, 5000])
def test_documents_over_the_limit_are_measured(depth: int) -> None:
    assert json_depth_over(_nested_text(depth)) == depth


def test_brackets_inside_strings_do_not_nest() -> None:
    # Escaped quotes and backslashes must not end a string early or open one.
    strings = ["[" * 200, 'say \\"[[[[\\" and \\\\', "{{{{" * 50, "]\\\\"] * 300
    body = json.dumps({"texts": strings, "nested": _nested(3)}).encode()
    assert body.count(b"[") > 10 * MAX_JSON_DEPTH
    assert json_depth_over(body) is None
    # The same brackets outside strings are refused.
    assert json_depth_over(b"[" * 200 + b"]" * 200) == 200


def test_an_escaped_quote_does_not_hide_the_brackets_after_it() -> None:
    body = b'["a\\"' + b"[" * 100 + b'", ' + b"[" * 100 + b"]" * 101
    assert json_depth_over(body) == 101


def test_the_state_carries_across_scan_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(body_guard, "_SCAN_CHUNK", 3)
    inside = json.dumps(["\\" * 5 + "[" * 100, "x"]).encode()
    assert json_depth_over(inside) is None
    # The scan stops in the first chunk that goes over: a lower bound, over the limit.
    assert (json_depth_over(b"[" * 100 + b"]" * 100) or 0) > MAX_JSON_DEPTH


def test_utf16_bodies_are_scanned_too() -> None:
    assert json_depth_over(("[" * 100 + "]" * 100).encode("utf-16")) == 100


def test_a_large_flat_body_is_not_refused() -> None:
    body = json.dumps({"image_base64": "A" * 1_000_000, "list": [[1]] * 100_000}).encode()
    assert json_depth_over(body) is None


# ---- through the app ------------------------------------------------------------------------
@pytest.fixture
def client() -> Iterator[TestClient]:
    never = RuntimeError("never called")
    nodes = {
        name: FakeNode(deployment, predict=never, predict_many=never)
        for name, deployment in (
            ("moderation", "TextModeration"),
            ("sentiment", "Sentiment"),
            ("nsfw", "NsfwDetector"),
        )
    }
    with TestClient(build_fastapi_app(fake_state(nodes)), headers={"X-API-Key": TEST_KEY}) as c:
        yield c


def _json_post_routes(client: TestClient) -> list[str]:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return sorted(
        path
        for path, methods in paths.items()
        if "post" in methods and "{" not in path and "requestBody" in methods["post"]
    )


def test_every_json_route_answers_400_naming_the_body(client: TestClient) -> None:
    routes = _json_post_routes(client)
    assert "/api/v1/moderation/image" in routes and "/api/v1/moderation/text" in routes
    for path in routes:
        response = client.post(
            path, content=NESTED_ARRAYS, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, f"{path}: {response.status_code} {response.text}"
        error = response.json()["error"]
        assert error["code"] == "json_too_deep" and error["field"] == "body", path
        assert "5000 levels" in error["message"] and str(MAX_JSON_DEPTH) in error["message"]


def test_a_body_without_content_type_is_scanned(client: TestClient) -> None:
    response = client.post("/api/v1/moderation/image", content=NESTED_ARRAYS)
    assert response.status_code == 400 and response.json()["error"]["field"] == "body"


def test_nested_objects_are_refused_too(client: TestClient) -> None:
    body = b'{"image_url": ' + _nested_text(300) + b"}"
    response = client.post(
        "/api/v1/moderation/image", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "json_too_deep"


def test_a_shallow_body_reaches_the_route(client: TestClient) -> None:
    response = client.post("/api/v1/moderation/image", json={"image_url": "ftp://a.example/x"})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "image_url"


def test_uploads_are_not_scanned(client: TestClient) -> None:
    # An upload's bytes may hold any number of brackets; the route decodes (and refuses) it.
    response = client.post(
        "/api/v1/moderation/image", files={"file": ("x.png", b"[" * 5000, "image/png")}
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "file"


def test_the_key_is_still_checked_first(client: TestClient) -> None:
    response = client.post(
        "/api/v1/moderation/text",
        content=NESTED_ARRAYS,
        headers={"Content-Type": "application/json", "X-API-Key": "wrong"},
    )
    assert response.status_code == 401


def test_a_recursion_error_is_a_400_not_a_500() -> None:
    app = build_fastapi_app(fake_state())

    def deep() -> None:
        raise RecursionError("maximum recursion depth exceeded")

    app.add_api_route("/api/v1/deep", deep, methods=["GET"])
    with TestClient(app, headers={"X-API-Key": TEST_KEY}) as client:
        response = client.get("/api/v1/deep")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "json_too_deep",
        "message": response.json()["error"]["message"],
        "field": "body",
    }
