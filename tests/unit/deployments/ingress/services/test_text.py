"""A text node serving its own fallback (a refused shipped head), seen from the ingress: its
answers are degraded (and so never approve), and /health shows the node degraded."""

from __future__ import annotations

from fastapi.testclient import TestClient

from deployments.ingress.app import build_fastapi_app
from models.answers import Answer, ModelRef
from tests.unit.deployments.ingress.fakes import TEST_KEY, FakeInfo, FakeNode, fake_state

REASON = "shipped moderation head refused (ShippedArtifactError); fallback answers"
FALLBACK = ModelRef(name="alt-profanity-check", version="1.9.1", device="cpu")


def test_answers_of_a_node_serving_its_fallback_are_degraded() -> None:
    def predict_many(texts: list[str]) -> list[Answer[dict[str, float]]]:
        return [Answer({"offensive": 0.01}, FALLBACK, REASON) for _ in texts]

    info = FakeInfo(name="alt-profanity-check", version="1.9.1", degraded_reason=REASON)
    node = FakeNode("TextModeration", predict_many=predict_many, info=info)
    state = fake_state({"moderation": node})
    with TestClient(build_fastapi_app(state), headers={"X-API-Key": TEST_KEY}) as client:
        response = client.post("/api/v1/moderation/batch", json={"texts": ["hello", "hi"]})
        assert response.status_code == 200, response.text
        for result in response.json()["results"]:
            assert result["degraded"] is True and result["degraded_reason"] == REASON
            assert result["model"]["name"] == "alt-profanity-check"
            # A low score from a fallback is still not an unreviewed approval.
            assert result["action"] == "flag_for_review"
        report = client.get("/api/v1/health").json()
        assert report["status"] == "degraded"
        assert report["nodes"]["moderation"]["status"] == "degraded"
        assert report["nodes"]["moderation"]["degraded_reason"] == REASON
