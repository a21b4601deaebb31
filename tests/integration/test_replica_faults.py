"""Replica faults under steady load: a killed replica costs at most its in-flight requests.

One deploy of the default graph (moderation + sentiment) serves both tests. Requests go to
``/api/v1/moderation/text`` at a steady rate while a replica actor is killed with ``ray.kill``:

- the TextModeration replica: every answer is still a 200 (requests the dead replica held, or
  sent before Serve has a new one running, are answered by the ingress's fallback with
  ``degraded: true``); Serve creates a new replica at its next health check; full
  (non-degraded) service is back within 10 s of the kill, or, where the new replica itself
  took longer to start (imports and model load on a loaded machine), within 10 s of it running;
- the Ingress replica: requests in flight may fail (connection errors, 5xx from the proxy);
  Serve starts a new replica and every request sent once it runs succeeds.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from deployments.app import HEALTH_CHECK_PERIOD_S, build_graph
from tests.integration.conftest import TEST_API_KEY, deploy, embedded_args, undeploy
from tests.integration.replicas import kill_and_wait_for_replacement

pytestmark = pytest.mark.integration

APP_NAME = "socialplay"
# Steady load: requests per second, and the most in flight at once (the rest wait to be sent).
RATE_PER_S = 20
MAX_IN_FLIGHT = 64
ROUTE = "/api/v1/moderation/text"
# Full service back within 10 s of the kill (the bound), or, where the new replica
# itself took longer to start (its imports and model load on a loaded 2-core machine), within
# 10 s of it running.
MODEL_RECOVERY_S = 10.0
# Serve notices the death at its next health check; slack for a loaded machine.
DETECT_SLACK_S = 5.0
# Past this the test gives up waiting (a failure, not a bound being measured).
GIVE_UP_S = 90.0
# A streak of this many full answers in a row (across all clients) counts as "service back".
STREAK = 20


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent and answered, and how."""

    sent_s: float
    done_s: float
    status: int | None  # None: no HTTP answer (connection error, timeout)
    degraded: bool | None = None
    reason: str | None = None


@dataclass
class Load:
    """Requests sent at a steady rate (open loop) until stopped; every outcome is kept.

    Open loop on purpose: a request stuck for the node timeout must not stop the next ones
    from being sent, or nothing would be sent while the node is away and "service is back"
    could not be seen until the stuck requests returned.
    """

    base_url: str
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _send(self, client: httpx.Client, number: int) -> None:
        # Distinct texts: the node's result cache must not answer for a dead replica.
        text = f"steady load message number {number}, have a nice day"
        sent = time.monotonic()
        try:
            response = client.post(ROUTE, json={"text": text})
        except httpx.HTTPError:
            outcome = Outcome(sent, time.monotonic(), None)
        else:
            body = response.json() if response.status_code == 200 else {}
            outcome = Outcome(
                sent,
                time.monotonic(),
                response.status_code,
                body.get("degraded"),
                body.get("degraded_reason") if body else response.text[:300],
            )
        with self._lock:
            self.outcomes.append(outcome)

    def _drive(self) -> None:
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT)
        headers = {"X-API-Key": TEST_API_KEY}
        with (
            httpx.Client(
                base_url=self.base_url, headers=headers, timeout=30, limits=limits
            ) as client,
            ThreadPoolExecutor(MAX_IN_FLIGHT) as pool,
        ):
            for number in itertools.count():
                if self._stop.wait(1.0 / RATE_PER_S):
                    break
                pool.submit(self._send, client, number)

    def __enter__(self) -> Load:
        self._driver = threading.Thread(target=self._drive, daemon=True)
        self._driver.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._driver.join(timeout=60)

    def snapshot(self) -> list[Outcome]:
        """The outcomes so far, in completion order."""
        with self._lock:
            return list(self.outcomes)

    def wait_for_full_service(self, since_s: float, deadline_s: float) -> float | None:
        """When the first of ``STREAK`` full answers in a row sent after ``since_s`` was sent,
        or None when no such streak began before ``deadline_s`` (monotonic seconds).
        """
        while time.monotonic() < deadline_s:
            start = streak_start(self.snapshot(), since_s)
            if start is not None:
                return start
            time.sleep(0.2)
        return streak_start(self.snapshot(), since_s)


def full(outcome: Outcome) -> bool:
    """A 200 from the model node itself (not from the ingress's fallback)."""
    return outcome.status == 200 and outcome.degraded is False


def streak_start(outcomes: list[Outcome], since_s: float) -> float | None:
    """Send time of the first of ``STREAK`` full answers in a row (in send order) among the
    requests sent after ``since_s``: from there on the service answered in full."""
    run: list[Outcome] = []
    for outcome in sorted(outcomes, key=lambda item: item.sent_s):
        if outcome.sent_s < since_s:
            continue
        run = [*run, outcome] if full(outcome) else []
        if len(run) >= STREAK:
            return run[0].sent_s
    return None


@pytest.fixture(scope="module", autouse=True)
def default_app(base_url: str) -> Iterator[None]:
    small = {"ray_actor_options": {"num_cpus": 0.1}}
    graph = build_graph(
        embedded_args(), {"Ingress": small, "TextModeration": small, "Sentiment": small}
    )
    deploy(graph, base_url, name=APP_NAME)
    yield
    undeploy(APP_NAME)


def _seconds(at_s: float | None, since_s: float) -> str:
    return "never" if at_s is None else f"{at_s - since_s:.1f} s"


def test_killed_moderation_replica_costs_only_degraded_answers(base_url: str) -> None:
    with Load(base_url) as load:
        before = load.wait_for_full_service(time.monotonic(), time.monotonic() + 30)
        assert before is not None, f"no steady full service before the kill: {load.snapshot()[-5:]}"
        replaced = kill_and_wait_for_replacement(APP_NAME, "TextModeration", GIVE_UP_S)
        killed_at = replaced.killed_at_s
        back = load.wait_for_full_service(killed_at, killed_at + GIVE_UP_S)
    outcomes = load.snapshot()
    degraded = [o for o in outcomes if o.degraded]
    print(
        f"\nTextModeration killed: {len(degraded)} of "
        f"{sum(1 for o in outcomes if o.done_s >= killed_at)} later answers degraded; new replica "
        f"created after {_seconds(replaced.created_at_s, killed_at)}, running after "
        f"{_seconds(replaced.running_at_s, killed_at)}; full service after "
        f"{_seconds(back, killed_at)}"
    )
    # Never a 5xx or a lost request: the fallback answers while the node is away.
    statuses = {o.status for o in outcomes}
    refused = [o.reason for o in outcomes if o.status != 200]
    assert statuses == {200}, f"statuses seen: {statuses}; first refusals: {refused[:3]}"
    assert all(o.reason for o in degraded), "a degraded answer says why"
    assert all(o.done_s >= killed_at for o in degraded), "degraded answers only after the kill"
    # Serve notices the death at its next health check (deployments/app.py) and replaces it.
    assert replaced.created_at_s is not None, "Serve started no new replica"
    assert replaced.created_at_s - killed_at <= HEALTH_CHECK_PERIOD_S + DETECT_SLACK_S
    assert replaced.running_at_s is not None, f"the new replica was not running in {GIVE_UP_S} s"
    # Full service follows the new replica at once: the ingress does not keep answering from
    # its fallback (an open circuit breaker probes again after circuit_breaker.open_s).
    assert back is not None, f"full service never came back within {GIVE_UP_S} s of the kill"
    assert back - killed_at <= MODEL_RECOVERY_S or back - replaced.running_at_s <= (
        MODEL_RECOVERY_S
    ), (
        f"full service came back {back - killed_at:.1f} s after the kill, "
        f"{back - replaced.running_at_s:.1f} s after the new replica was running"
    )


def test_killed_ingress_replica_fails_only_in_flight_requests(base_url: str) -> None:
    with Load(base_url) as load:
        before = load.wait_for_full_service(time.monotonic(), time.monotonic() + 30)
        assert before is not None, f"no steady full service before the kill: {load.snapshot()[-5:]}"
        replaced = kill_and_wait_for_replacement(APP_NAME, "Ingress", GIVE_UP_S)
        killed_at = replaced.killed_at_s
        back = load.wait_for_full_service(killed_at, killed_at + GIVE_UP_S)
        # Keep the load on a little longer: once back, every later request must succeed.
        time.sleep(1.0)
    outcomes = load.snapshot()
    failed = [o for o in outcomes if not full(o)]
    print(
        f"\nIngress killed: {len(failed)} requests failed (statuses "
        f"{sorted({str(o.status) for o in failed})}); new replica running after "
        f"{_seconds(replaced.running_at_s, killed_at)}; full service after "
        f"{_seconds(back, killed_at)}"
    )
    assert replaced.created_at_s is not None, "Serve started no new replica"
    assert replaced.running_at_s is not None, f"the new replica was not running in {GIVE_UP_S} s"
    assert back is not None, f"new requests did not succeed within {GIVE_UP_S} s of the kill"
    # Before the kill nothing fails; once the new replica runs, nothing fails.
    assert all(full(o) for o in outcomes if o.done_s < killed_at)
    assert all(full(o) for o in outcomes if o.sent_s >= max(back, replaced.running_at_s))
    # What failed was in flight at the kill or sent before the new replica ran, and failed
    # visibly (no answer or a 5xx from the proxy), never as a degraded or wrong 200.
    assert all(o.sent_s < replaced.running_at_s for o in failed)
    assert all(o.status is None or o.status >= 500 for o in failed), failed
