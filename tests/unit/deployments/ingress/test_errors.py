"""The ingress's shared 503 answer for nodes that have no fallback."""

from __future__ import annotations

import json

from deployments.ingress.http import node_unavailable


def test_node_unavailable_names_node_reason_and_fix() -> None:
    response = node_unavailable("trends", TimeoutError(), label="trends node")
    assert response.status_code == 503
    error = json.loads(bytes(response.body))["error"]
    assert error == {
        "code": "trends_unavailable",
        "message": "the trends node could not answer (node timed out); retry",
        "field": None,
    }


def test_node_unavailable_with_its_own_action_and_hint() -> None:
    response = node_unavailable(
        "recommender", RuntimeError("secret text"), what="take the events", hint="retry later"
    )
    message = json.loads(bytes(response.body))["error"]["message"]
    assert (
        message
        == "the recommender could not take the events (node failed (RuntimeError)); retry later"
    )
    assert "secret text" not in message, "exception messages may carry request data"
