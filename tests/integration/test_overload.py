"""Overload against a slow node: the real Ingress over a stub moderation node that takes
0.3 s a call, with small queues everywhere, driven far beyond its capacity at once.

What must hold: the excess is shed with 503 (or 429) and a ``Retry-After`` header, both where
Ray's proxy finds the Ingress queue full and where the Ingress finds the node's queue full;
every admitted request is answered by the node (200, not degraded: shed load never becomes
fallback work, and back-pressure never opens a breaker); no answer takes longer than the
configured timeout; the Ingress replica's memory stays flat from wave to wave.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ray import serve

from deployments.ingress.deployment import Ingress
from models.answers import Answer, JsonObject, ModelRef
from tests.integration.conftest import TEST_API_KEY, deploy, undeploy

pytestmark = pytest.mark.integration

NODE_CALL_S = 0.3
MODERATION_TIMEOUT_S = 5.0
# Ingress: 8 at once + 8 waiting in the proxy; node: 1 call at once + 1 waiting per caller.
INGRESS_ONGOING = 8
INGRESS_QUEUED = 8
# Each wave: 64 requests at once, 4x what the Ingress admits, and far more than the node's
# capacity (about 2 texts per 0.3 s).
WAVE = 64
WAVES = 3
# Allowance for scheduling on a loaded 2-core CI machine.
SLACK_S = 5.0
# Resident memory the Ingress replica may gain between the first wave and the last.
MAX_RSS_GROWTH_BYTES = 50 * 1024 * 1024


class StubInfo:
    """What /health reads from a node's ``info()``."""

    def as_json(self) -> JsonObject:
        return {"status": "ok"}


@serve.deployment(name="SlowModeration", max_ongoing_requests=1, max_queued_requests=1)
class SlowModeration:
    """A moderation node that takes NODE_CALL_S per call, whatever the batch."""

    async def predict_many(self, texts: list[str]) -> list[Answer[dict[str, float]]]:
        await asyncio.sleep(NODE_CALL_S)
        model = ModelRef(name="slow-stub", version="1", device="cpu")
        return [Answer({"offensive": 0.1}, model) for _ in texts]

    def info(self) -> StubInfo:
        return StubInfo()


@pytest.fixture(scope="module")
def overload_app(base_url: str) -> Iterator[None]:
    ingress = Ingress.options(  # type: ignore[attr-defined]
        max_ongoing_requests=INGRESS_ONGOING,
        max_queued_requests=INGRESS_QUEUED,
        backpressure_config={"status_code": 503, "retry_after_s": 1},
        ray_actor_options={"num_cpus": 0.1},
        user_config={
            "timeouts": {"moderation_s": MODERATION_TIMEOUT_S},
            # Small batches, so the Ingress keeps several node calls in flight at once and
            # fills the node's queue.
            "coalesce": {"max_batch_size": 2, "max_concurrent_batches": 4},
            "audit": {"enabled": False},
        },
    )
    node = SlowModeration.options(ray_actor_options={"num_cpus": 0.1})  # type: ignore[attr-defined]
    deploy(ingress.bind(moderation=node.bind()), base_url)
    yield
    undeploy()


def _ingress_replica_rss_bytes() -> int:
    """Resident memory of this session's Ingress replica (a process this test started)."""
    me = os.getpid()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ServeReplica:socialplay:Ingress" not in cmdline:
            continue
        # Only our own Ray's replica: this test process is among its ancestors.
        pid = int(entry.name)
        while pid > 1:
            if pid == me:
                found.append(int(entry.name))
                break
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                break
            pid = int(stat.rsplit(")", 1)[1].split()[1])
    assert len(found) == 1, f"expected one Ingress replica of this session, found {found}"
    for line in Path(f"/proc/{found[0]}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line in /proc/<pid>/status")


async def _wave(base_url: str) -> list[tuple[int, float, dict[str, str], str]]:
    """WAVE moderation requests at once: (status, seconds, headers, body) of each."""
    limits = httpx.Limits(max_connections=WAVE, max_keepalive_connections=WAVE)
    timeout = httpx.Timeout(MODERATION_TIMEOUT_S + 3 * SLACK_S)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"X-API-Key": TEST_API_KEY}, limits=limits, timeout=timeout
    ) as client:

        async def one(i: int) -> tuple[int, float, dict[str, str], str]:
            started = time.monotonic()
            response = await client.post("/api/v1/moderation/text", json={"text": f"post {i}"})
            return (
                response.status_code,
                time.monotonic() - started,
                dict(response.headers),
                response.text,
            )

        return await asyncio.gather(*(one(i) for i in range(WAVE)))


def test_overload_is_shed_with_retry_after_and_admitted_requests_succeed(
    base_url: str, overload_app: None
) -> None:
    results = asyncio.run(_wave(base_url))  # warm-up wave: the replica's memory settles
    rss_before = _ingress_replica_rss_bytes()
    for _ in range(WAVES - 1):
        results += asyncio.run(_wave(base_url))
    rss_after = _ingress_replica_rss_bytes()

    admitted = [r for r in results if r[0] == 200]
    shed = [r for r in results if r[0] != 200]
    assert admitted, "no request was admitted"
    assert len(shed) >= len(results) // 2, f"only {len(shed)} of {len(results)} were shed"
    for status, _, headers, body in shed:
        assert status in (429, 503), f"{status}: {body[:200]}"
        assert int(headers["retry-after"]) >= 1, headers
    # Ray's proxy sheds what the Ingress queue cannot hold; the Ingress sheds what the node's
    # queue cannot hold (JSON error "overloaded").
    assert any('"code":"overloaded"' in body for _, _, _, body in shed), "no node back-pressure"
    assert any('"code"' not in body for _, _, _, body in shed), "no proxy back-pressure"
    for _, _, _, body in admitted:
        assert '"degraded":false' in body, body[:300]
    slowest_s = max(seconds for _, seconds, _, _ in results)
    assert slowest_s < MODERATION_TIMEOUT_S + SLACK_S, f"an answer took {slowest_s:.1f} s"
    growth = rss_after - rss_before
    assert growth < MAX_RSS_GROWTH_BYTES, f"the Ingress grew by {growth / 2**20:.0f} MiB"
