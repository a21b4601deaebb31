"""The audit log over HTTP: decision ids on moderation answers, lookup and moderator review."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from deployments.app import build_graph
from tests.integration.conftest import deploy, embedded_args, health_detail, undeploy

pytestmark = pytest.mark.integration

INGRESS_CONFIG = {
    "audit": {"store_text": True, "flush_interval_s": 0.05, "max_note_chars": 40},
}
ABUSIVE = "you are a fucking idiot and a piece of shit"
CLEAN = "have a lovely day, the park looks beautiful this morning"
UNKNOWN_ID = "0" * 32


@pytest.fixture(scope="module", autouse=True)
def audit_app(base_url: str) -> Iterator[None]:
    graph = build_graph(
        embedded_args(),
        {
            "Ingress": {"user_config": INGRESS_CONFIG, "ray_actor_options": {"num_cpus": 0.1}},
            "TextModeration": {"ray_actor_options": {"num_cpus": 0.1}},
            "Sentiment": {"ray_actor_options": {"num_cpus": 0.1}},
        },
    )
    deploy(graph, base_url)
    yield
    undeploy()


def moderate(client: httpx.Client, text: str, **extra: object) -> dict[str, object]:
    response = client.post("/api/v1/moderation/text", json={"text": text, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_moderation_answer_carries_a_recorded_decision(client: httpx.Client) -> None:
    answer = moderate(client, ABUSIVE, user_id="user-123")
    decision_id = answer["decision_id"]
    assert isinstance(decision_id, str) and len(decision_id) == 32

    response = client.get(f"/api/v1/moderation/decisions/{decision_id}")
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["decision_id"] == decision_id
    assert record["action"] == answer["action"]
    assert record["scores"] == answer["scores"]
    assert record["flagged_categories"] == answer["flagged_categories"]
    assert record["model"]["name"] == "alt-profanity-check"
    assert record["route"] == "text"
    assert record["text"] == ABUSIVE  # audit.store_text is on in this deployment
    assert record["user_id_hash"] and "user-123" not in record["user_id_hash"]
    assert record["request_id"]  # Serve's request id, to join with access logs
    assert record["review"] is None


def test_review_is_stored_on_the_decision(client: httpx.Client) -> None:
    decision_id = moderate(client, CLEAN)["decision_id"]
    review = {
        "verdict": "reject",
        "labels": {"offensive": True, "hate_speech": False},
        "reviewer_id": "moderator-9",
        "note": "sarcastic insult",
    }
    response = client.post(f"/api/v1/moderation/{decision_id}/review", json=review)
    assert response.status_code == 200, response.text
    stored = response.json()
    assert stored["decision_id"] == decision_id and stored["stored"] is True
    assert stored["review"]["verdict"] == "reject"
    assert stored["review"]["labels"] == {"offensive": True, "hate_speech": False}
    assert stored["review"]["reviewer_id_hash"] != "moderator-9"
    assert stored["review"]["reviewed_at"]

    again = client.get(f"/api/v1/moderation/decisions/{decision_id}").json()
    assert again["review"] == stored["review"]
    assert again["action"] == "approve"  # the model's decision itself is unchanged


def test_batch_and_post_decisions_each_get_an_id(client: httpx.Client) -> None:
    batch = client.post("/api/v1/moderation/batch", json={"texts": [CLEAN, ABUSIVE]}).json()
    ids = [result["decision_id"] for result in batch["results"]]
    assert len(set(ids)) == 2 and all(ids)
    assert client.get(f"/api/v1/moderation/decisions/{ids[1]}").json()["text"] == ABUSIVE
    post = client.post("/api/v1/moderation/moderate", json={"content": CLEAN}).json()
    record = client.get(f"/api/v1/moderation/decisions/{post['decision_id']}").json()
    assert record["route"] == "moderate" and record["action"] == post["action"]


def test_unknown_decision_is_404(client: httpx.Client) -> None:
    review = {"verdict": "approve", "reviewer_id": "moderator-9"}
    response = client.post(f"/api/v1/moderation/{UNKNOWN_ID}/review", json=review)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "decision_not_found"
    assert response.json()["error"]["field"] == "decision_id"
    assert client.get(f"/api/v1/moderation/decisions/{UNKNOWN_ID}").status_code == 404


def test_malformed_review_requests_are_422(client: httpx.Client) -> None:
    decision_id = moderate(client, CLEAN)["decision_id"]
    bad_verdict = client.post(
        f"/api/v1/moderation/{decision_id}/review",
        json={"verdict": "delete", "reviewer_id": "moderator-9"},
    )
    assert bad_verdict.status_code == 422
    assert bad_verdict.json()["error"]["field"] == "verdict"

    bad_id = client.post(
        "/api/v1/moderation/not-an-id/review",
        json={"verdict": "approve", "reviewer_id": "moderator-9"},
    )
    assert bad_id.status_code == 422 and bad_id.json()["error"]["field"] == "decision_id"

    long_note = client.post(
        f"/api/v1/moderation/{decision_id}/review",
        json={"verdict": "approve", "reviewer_id": "moderator-9", "note": "x" * 41},
    )
    assert long_note.status_code == 422 and long_note.json()["error"]["field"] == "note"

    no_key = httpx.post(
        f"{client.base_url}/api/v1/moderation/{decision_id}/review",
        json={"verdict": "approve", "reviewer_id": "moderator-9"},
    )
    assert no_key.status_code == 401


def test_health_reports_the_audit_store(base_url: str, client: httpx.Client) -> None:
    moderate(client, CLEAN)
    audit = health_detail(base_url)["audit"]
    assert audit["enabled"] is True
    assert audit["store"].startswith("embedded") and audit["persisted"] is False
    assert audit["dropped"] == 0 and audit["last_error"] is None
    assert audit["buffered"] >= 0 and audit["written"] + audit["buffered"] >= 1


def test_a_down_store_fails_no_moderation_and_reviews_answer_503(
    base_url: str, client: httpx.Client
) -> None:
    # Last in this module: redeploys the ingress against a MongoDB nobody listens on.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    graph = build_graph(
        embedded_args(),
        {
            "Ingress": {
                "user_config": INGRESS_CONFIG,
                "ray_actor_options": {
                    "num_cpus": 0.1,
                    "runtime_env": {
                        "env_vars": {"MONGODB_URL": f"mongodb://127.0.0.1:{dead_port}/audit"}
                    },
                },
            },
            "TextModeration": {"ray_actor_options": {"num_cpus": 0.1}},
            "Sentiment": {"ray_actor_options": {"num_cpus": 0.1}},
        },
    )
    deploy(graph, base_url)
    answer = moderate(client, ABUSIVE)  # 200: the outage never fails a moderation
    assert isinstance(answer["decision_id"], str)
    response = client.post(
        f"/api/v1/moderation/{answer['decision_id']}/review",
        json={"verdict": "reject", "reviewer_id": "moderator-9"},
    )
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "audit_store_unavailable"
    audit = health_detail(base_url)["audit"]
    assert audit["store"] == "mongodb" and audit["persisted"] is True
    assert audit["last_error"] == "ServerSelectionTimeoutError"
    assert audit["buffered"] >= 1 and audit["dropped"] == 0  # kept for when it is back
