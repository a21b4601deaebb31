"""Public /health: ok/degraded only, from a snapshot the callers share; the nodes are asked at
most once per HEALTH_SNAPSHOT_MAX_AGE_S, not once per request."""

from __future__ import annotations

from fastapi.testclient import TestClient

from deployments.ingress.app import build_fastapi_app
from tests.unit.deployments.ingress.fakes import FakeInfo, FakeNode, fake_state


def test_public_health_answers_from_a_shared_snapshot() -> None:
    node = FakeNode("TextModeration", info=FakeInfo(name="fake", version="m1", device="cpu"))
    state = fake_state({"moderation": node})
    with TestClient(build_fastapi_app(state)) as client:
        answers = [client.get("/health") for _ in range(20)]
        assert node.methods["info"].calls == [()], "one check for twenty callers"
        assert {r.status_code for r in answers} == {200}
        assert all(r.json() == {"status": "ok"} for r in answers), "nothing but the verdict"
        first_refresh = state.health.refresh
        # The node breaks; the snapshot is stale: the next caller starts one refresh.
        node.methods["info"].outcome = RuntimeError("model crashed")
        state.health.taken_at_s -= 3600
        client.get("/health")
        refresh = state.health.refresh
        assert refresh is not None and refresh is not first_refresh

        async def refreshed() -> None:
            await refresh

        client.portal.call(refreshed)
        assert client.get("/health").json() == {"status": "degraded"}
        assert len(node.methods["info"].calls) == 2
