"""The per-node circuit breaker's state machine, on an injected clock, and ``call_node``
around it (fake handles, no Ray)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from configs.ingress import CircuitBreakerConfig, IngressConfig
from deployments.ingress import calls as ingress_calls
from deployments.ingress.calls import (
    breaker_states,
    call_node,
    failure_reason,
    note_degraded,
    result_version,
)
from deployments.ingress.circuit import BreakerRegistry, CircuitBreaker, CircuitOpenError, Ticket
from deployments.ingress.state import IngressState
from models.answers import Answer, ModelRef
from models.exceptions import InvalidInputError
from tests.unit.deployments.ingress.fakes import FakeMethod, fake_state

SETTINGS = CircuitBreakerConfig(failure_threshold=3, open_s=10.0, half_open_max_calls=1)


def fail(breaker: CircuitBreaker, now: float) -> None:
    breaker.on_failure(breaker.before_call(SETTINGS, now), SETTINGS, now)


def succeed(breaker: CircuitBreaker, now: float) -> None:
    breaker.on_success(breaker.before_call(SETTINGS, now), now)


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker("TextModeration")
    fail(breaker, 0.0)
    fail(breaker, 0.1)
    assert breaker.state(SETTINGS, 0.2) == "closed"
    fail(breaker, 0.2)
    assert breaker.state(SETTINGS, 0.3) == "open"


def test_a_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker("TextModeration")
    fail(breaker, 0.0)
    fail(breaker, 0.1)
    succeed(breaker, 0.2)
    fail(breaker, 0.3)
    fail(breaker, 0.4)
    assert breaker.state(SETTINGS, 0.5) == "closed"
    assert breaker.snapshot(SETTINGS, 0.5) == {"state": "closed", "consecutive_failures": 2}


def test_open_breaker_fails_fast_until_open_s_has_passed() -> None:
    breaker = CircuitBreaker("TextModeration")
    for t in (0.0, 0.1, 0.2):
        fail(breaker, t)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.before_call(SETTINGS, 5.2)
    assert raised.value.node == "TextModeration"
    assert raised.value.retry_in_s == pytest.approx(5.0)
    with pytest.raises(CircuitOpenError):
        breaker.before_call(SETTINGS, 10.1)
    assert breaker.state(SETTINGS, 10.2) == "half_open"


def test_half_open_lets_only_max_calls_probes_through() -> None:
    settings = CircuitBreakerConfig(failure_threshold=1, open_s=1.0, half_open_max_calls=2)
    breaker = CircuitBreaker("Sentiment")
    breaker.on_failure(breaker.before_call(settings, 0.0), settings, 0.0)
    first = breaker.before_call(settings, 2.0)
    second = breaker.before_call(settings, 2.0)
    assert first.probe and second.probe
    with pytest.raises(CircuitOpenError):
        breaker.before_call(settings, 2.0)
    # A cancelled probe frees its slot without a verdict.
    breaker.on_abandoned(first)
    third = breaker.before_call(settings, 2.1)
    assert third.probe
    assert breaker.state(settings, 2.1) == "half_open"


def test_successful_probe_closes_the_breaker() -> None:
    breaker = CircuitBreaker("TextModeration")
    for t in (0.0, 0.1, 0.2):
        fail(breaker, t)
    probe = breaker.before_call(SETTINGS, 11.0)
    breaker.on_success(probe, 11.5)
    assert breaker.state(SETTINGS, 11.5) == "closed"
    # Closed again: calls go through, and it takes a full threshold to reopen.
    fail(breaker, 12.0)
    fail(breaker, 12.1)
    assert not breaker.before_call(SETTINGS, 12.2).probe


def test_failed_probe_reopens_for_another_open_s() -> None:
    breaker = CircuitBreaker("TextModeration")
    for t in (0.0, 0.1, 0.2):
        fail(breaker, t)
    probe = breaker.before_call(SETTINGS, 11.0)
    breaker.on_failure(probe, SETTINGS, 11.5)
    assert breaker.state(SETTINGS, 11.6) == "open"
    with pytest.raises(CircuitOpenError):
        breaker.before_call(SETTINGS, 20.0)  # 8.5 s after the probe failed: still open
    assert breaker.before_call(SETTINGS, 21.6).probe


def test_late_outcomes_of_older_calls_are_ignored() -> None:
    breaker = CircuitBreaker("TextModeration")
    slow: Ticket = breaker.before_call(SETTINGS, 0.0)  # admitted while closed
    for t in (0.1, 0.2, 0.3):
        fail(breaker, t)
    probe = breaker.before_call(SETTINGS, 10.5)
    # The slow call answers now: it must not close the breaker in the probe's place...
    breaker.on_success(slow, 10.6)
    assert breaker.state(SETTINGS, 10.6) == "half_open"
    breaker.on_failure(slow, SETTINGS, 10.6)
    assert breaker.state(SETTINGS, 10.6) == "half_open", "...nor reopen it"
    breaker.on_success(probe, 10.7)
    assert breaker.state(SETTINGS, 10.7) == "closed"


def test_registry_keeps_one_breaker_per_node() -> None:
    registry = BreakerRegistry()
    assert registry.get("TextModeration") is registry.get("TextModeration")
    for t in (0.0, 0.1, 0.2):
        fail(registry.get("TextModeration"), t)
    assert registry.snapshot(SETTINGS, 1.0) == {
        "TextModeration": {"state": "open", "consecutive_failures": 0},
    }
    registry.get("Sentiment")
    assert registry.snapshot(SETTINGS, 1.0)["Sentiment"]["state"] == "closed"


def test_config_is_part_of_the_ingress_config_and_validated() -> None:
    config = IngressConfig.model_validate({"circuit_breaker": {"failure_threshold": 2}})
    assert config.circuit_breaker.failure_threshold == 2
    assert IngressConfig().circuit_breaker.enabled is True
    with pytest.raises(ValidationError):
        CircuitBreakerConfig(failure_threshold=0)
    with pytest.raises(ValidationError):
        CircuitBreakerConfig.model_validate({"open_seconds": 5})


# ---- call_node: the breaker and the metrics around a handle call (fake handles, no Ray) ----


# The state, and the node calls it recorded: (node, version, ok).
Recorded = tuple[IngressState, list[tuple[str, str, bool]]]


@pytest.fixture
def fresh_state(
    monkeypatch: pytest.MonkeyPatch,
) -> Recorded:
    """A replica state with a fresh breaker registry; node-call metrics captured, not exported."""
    state = fake_state(config={"circuit_breaker": {"failure_threshold": 2, "open_s": 60.0}})
    calls: list[tuple[str, str, bool]] = []
    monkeypatch.setattr(
        ingress_calls,
        "record_node_call",
        lambda node, version, latency_s, ok: calls.append((node, version, ok)),
    )
    return state, calls


def test_call_node_opens_the_breaker_and_then_fails_fast(
    fresh_state: Recorded,
) -> None:
    state, recorded = fresh_state
    broken = FakeMethod(RuntimeError("model crashed"))
    for _ in range(2):
        with pytest.raises(RuntimeError):
            asyncio.run(call_node(state, broken, 1.0, "text"))
    with pytest.raises(CircuitOpenError) as raised:
        asyncio.run(call_node(state, broken, 1.0, "text"))
    assert len(broken.calls) == 2, "an open breaker makes no handle call"
    assert failure_reason(raised.value) == "circuit open"
    assert breaker_states(state)["TextModeration"]["state"] == "open"
    assert recorded == [("TextModeration", "unknown", False)] * 2
    # Another node's breaker is its own.
    healthy = FakeMethod(Answer({}, ModelRef("m", "v3", "cpu")), "Sentiment")
    assert asyncio.run(call_node(state, healthy, 1.0, "text")).model.version == "v3"
    assert recorded[-1] == ("Sentiment", "v3", True)


def test_call_node_counts_timeouts_and_ignores_refused_input(
    fresh_state: Recorded,
) -> None:
    state, _ = fresh_state
    refusing = FakeMethod(InvalidInputError("text", "bad"))
    for _ in range(3):
        with pytest.raises(InvalidInputError):
            asyncio.run(call_node(state, refusing, 1.0, "text"))
    assert breaker_states(state)["TextModeration"]["state"] == "closed", "a refusal is an answer"

    stuck = FakeMethod(lambda *args: asyncio.sleep(30), "Sentiment")
    for _ in range(2):
        with pytest.raises(TimeoutError):
            asyncio.run(call_node(state, stuck, 0.01, "text"))
    assert stuck.last is not None and stuck.last.cancelled, (
        "a timed-out request is cancelled on the node"
    )
    assert breaker_states(state)["Sentiment"]["state"] == "open"


def test_call_node_versions_of_lists_and_unguarded_calls(
    fresh_state: Recorded,
) -> None:
    state, recorded = fresh_state
    batch = [Answer({}, ModelRef("m", "2", "cpu")), Answer({}, ModelRef("m", "2", "cpu"))]
    assert result_version(batch) == "2"
    assert result_version({"posts": []}) == "unknown"
    assert result_version([]) == "unknown"
    info = FakeMethod(RuntimeError("down"))
    for _ in range(3):
        with pytest.raises(RuntimeError):
            asyncio.run(call_node(state, info, 1.0, guarded=False))
    assert len(info.calls) == 3 and recorded == [], "unguarded calls: no breaker, no metrics"


def test_note_degraded_counts_reasons_as_three_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(
        ingress_calls, "record_degraded", lambda node, reason: seen.append((node, reason))
    )
    note_degraded("moderation", failure_reason(CircuitOpenError("M", 1.0)))
    note_degraded("moderation", failure_reason(TimeoutError()))
    note_degraded("sentiment", failure_reason(RuntimeError("text here")))
    assert seen == [
        ("moderation", "circuit open"),
        ("moderation", "timeout"),
        ("sentiment", "error"),
    ]
