"""Per-key token buckets: the bucket logic with an explicit clock, then 429s through the app."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient

from configs.ingress import IngressConfig
from deployments.ingress.app import build_fastapi_app
from deployments.ingress.rate_limit import KeyRateLimiter, key_id
from tests.unit.deployments.ingress.fakes import TEST_KEY, FakeInfo, FakeNode, answer, fake_state

OTHER_KEY = "another-unit-test-key"


def test_a_bucket_grants_its_burst_then_says_when_the_next_token_is_due() -> None:
    limiter = KeyRateLimiter()
    grants = [limiter.acquire("k", 2.0, 3, 100, now_s=10.0) for _ in range(3)]
    assert grants == [0.0, 0.0, 0.0]
    # Empty: the next token comes after 1 / rate seconds.
    assert limiter.acquire("k", 2.0, 3, 100, now_s=10.0) == 0.5
    # A quarter second refills half a token: still refused, with the rest of the wait.
    assert limiter.acquire("k", 2.0, 3, 100, now_s=10.25) == 0.25
    assert limiter.acquire("k", 2.0, 3, 100, now_s=10.5) == 0.0
    # A long pause refills up to the burst, never beyond it.
    granted = [limiter.acquire("k", 2.0, 3, 100, now_s=100.0) for _ in range(4)]
    assert granted[:3] == [0.0, 0.0, 0.0] and granted[3] > 0


def test_keys_have_their_own_buckets_and_the_table_is_bounded() -> None:
    limiter = KeyRateLimiter()
    assert limiter.acquire("a", 1.0, 1, 2, now_s=0.0) == 0.0
    assert limiter.acquire("a", 1.0, 1, 2, now_s=0.0) > 0
    assert limiter.acquire("b", 1.0, 1, 2, now_s=0.0) == 0.0
    assert limiter.acquire("c", 1.0, 1, 2, now_s=0.0) == 0.0
    assert len(limiter) == 2
    # "a" was the least recently used: dropped, it starts with a full bucket again.
    assert limiter.acquire("a", 1.0, 1, 2, now_s=0.0) == 0.0


def test_the_bucket_id_is_a_sha256_prefix_never_the_key() -> None:
    assert key_id(TEST_KEY) == hashlib.sha256(TEST_KEY.encode()).hexdigest()[:16]
    assert TEST_KEY not in key_id(TEST_KEY)
    assert key_id(TEST_KEY) != key_id(OTHER_KEY)


def _moderation_node() -> FakeNode:
    return FakeNode(
        "TextModeration",
        predict_many=lambda texts: [answer({"offensive": 0.1}) for _ in texts],
        info=FakeInfo(name="fake", version="1", device="cpu"),
    )


def test_a_key_over_its_rate_gets_429_with_retry_after_naming_the_header() -> None:
    limits = {"key_rate_per_s": 0.01, "key_burst": 2}
    state = fake_state(
        {"moderation": _moderation_node()}, {"limits": limits}, (TEST_KEY, OTHER_KEY)
    )
    app = build_fastapi_app(state)
    with TestClient(app, headers={"X-API-Key": TEST_KEY}) as client:
        statuses = [
            client.post("/api/v1/moderation/text", json={"text": "hi"}).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        refused = client.post("/api/v1/moderation/text", json={"text": "hi"})
        assert refused.status_code == 429
        # One token per 100 s: the client is told to come back then, in whole seconds.
        assert 1 <= int(refused.headers["Retry-After"]) <= 100
        error = refused.json()["error"]
        assert error["code"] == "rate_limited" and error["field"] == "X-API-Key"
        assert "X-API-Key" in error["message"]
        # Another key has its own bucket; a request without a key (docs) is not limited.
        other = client.post(
            "/api/v1/moderation/text", json={"text": "hi"}, headers={"X-API-Key": OTHER_KEY}
        )
        assert other.status_code == 200
        assert client.get("/openapi.json", headers={"X-API-Key": ""}).status_code == 200
        # The rate is live config: a reconfigure with a generous rate lets the key through.
        state.apply(IngressConfig.model_validate({"limits": {"key_rate_per_s": 1000.0}}))
        assert client.post("/api/v1/moderation/text", json={"text": "hi"}).status_code == 200


def test_a_wrong_key_is_refused_by_the_key_check_before_it_gets_a_bucket() -> None:
    limits = {"key_rate_per_s": 0.01, "key_burst": 1}
    state = fake_state({"moderation": _moderation_node()}, {"limits": limits})
    with TestClient(build_fastapi_app(state), headers={"X-API-Key": "wrong"}) as client:
        statuses = {
            client.post("/api/v1/moderation/text", json={"text": "hi"}).status_code
            for _ in range(3)
        }
    assert statuses == {401}
