"""Domain errors to HTTP: the shared 503 of nodes without a fallback, and the other mappings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.responses import JSONResponse

from deployments.ingress.calls import node_unavailable
from deployments.ingress.errors import domain_error_response
from models.exceptions import (
    FeatureNotEnabledError,
    ImageInputError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
)
from storage.audit_log import AuditStoreError


def error_of(response: JSONResponse) -> dict[str, Any]:
    return dict(json.loads(bytes(response.body))["error"])


def test_node_unavailable_names_node_reason_and_fix() -> None:
    response = domain_error_response(
        node_unavailable("trends", TimeoutError(), label="trends node")
    )
    assert response.status_code == 503
    assert error_of(response) == {
        "code": "trends_unavailable",
        "message": "the trends node could not answer (node timed out); retry",
        "field": None,
    }


def test_node_unavailable_with_its_own_action_and_hint() -> None:
    error = node_unavailable(
        "recommender", RuntimeError("secret text"), what="take the events", hint="retry later"
    )
    message = error_of(domain_error_response(error))["message"]
    assert (
        message
        == "the recommender could not take the events (node failed (RuntimeError)); retry later"
    )
    assert "secret text" not in message, "exception messages may carry request data"


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            InvalidInputError("texts[2]", "texts[2] is empty; send some text"),
            422,
            {"code": "invalid_field", "message": "texts[2] is empty; send some text"},
        ),
        (
            FeatureNotEnabledError("trends", "trends needs the trends node"),
            422,
            {"code": "feature_not_enabled", "message": "trends needs the trends node"},
        ),
        (
            ImageInputError("image_url", "too big", "image_too_large", status=413),
            413,
            {"code": "image_too_large", "message": "too big", "field": "image_url"},
        ),
        (
            NotFoundError("post_id", "post_id is not known", "unknown_post"),
            404,
            {"code": "unknown_post", "message": "post_id is not known", "field": "post_id"},
        ),
        (
            AuditStoreError("the decision store is unavailable (ConnectionError)"),
            503,
            {
                "code": "audit_store_unavailable",
                "message": "the decision store is unavailable (ConnectionError); retry later",
                "field": None,
            },
        ),
        (
            PayloadTooLargeError(2048, 1024),
            413,
            {"code": "payload_too_large", "field": "body"},
        ),
        (
            RuntimeError("a bug quoting the request"),
            500,
            {
                "code": "internal_error",
                "message": "internal error; the request was not processed",
                "field": None,
            },
        ),
    ],
)
def test_domain_errors_map_to_status_and_body(
    error: Exception, status: int, body: dict[str, Any]
) -> None:
    response = domain_error_response(error)
    assert response.status_code == status
    error_body = error_of(response)
    assert {key: error_body[key] for key in body} == body
    if isinstance(error, InvalidInputError):
        assert error_body["field"] == error.field
