"""Per-node circuit breakers of the ingress: stop calling a node that keeps failing.

Pure logic (no Ray, no clock of its own: every method takes ``now``), so the state machine is
unit-tested without a cluster. Each ingress replica keeps one ``BreakerRegistry``
(``IngressState.breakers``), keyed by the node's deployment name; ``calls.call_node`` uses it.

States:

- closed: every call goes through; ``failure_threshold`` consecutive failures (errors or
  timeouts) open the breaker.
- open: calls fail fast with ``CircuitOpenError`` (the route answers from its fallback) until
  ``open_s`` has passed.
- half-open: up to ``half_open_max_calls`` probe calls go through at once, the others still
  fail fast; a probe that succeeds closes the breaker, one that fails opens it again.

Outcomes of calls admitted before the last state change are ignored: a slow call that started
while the breaker was closed must not close (or reopen) it after a probe has decided.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal, Protocol

State = Literal["closed", "open", "half_open"]


class BreakerSettings(Protocol):
    """What a breaker reads from its configuration (``configs.ingress.CircuitBreakerConfig``)."""

    @property
    def failure_threshold(self) -> int: ...

    @property
    def open_s(self) -> float: ...

    @property
    def half_open_max_calls(self) -> int: ...


class CircuitOpenError(Exception):
    """The node's breaker is open: the call was not made."""

    def __init__(self, node: str, retry_in_s: float) -> None:
        super().__init__(f"circuit of {node} is open; next probe in {retry_in_s:.1f} s")
        self.node = node
        self.retry_in_s = retry_in_s


@dataclass(frozen=True)
class Ticket:
    """A call let through: the state generation it belongs to, and whether it is a probe."""

    generation: int
    probe: bool


class CircuitBreaker:
    """The breaker of one node. Thread-safe; every method takes the current time."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._state: State = "closed"
        # Bumped on every state change, so late outcomes of older calls are recognised.
        self._generation = 0
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probes_in_flight = 0

    def _move(self, state: State, now: float) -> None:
        self._state = state
        self._generation += 1
        self._consecutive_failures = 0
        self._probes_in_flight = 0
        if state == "open":
            self._opened_at = now

    def before_call(self, settings: BreakerSettings, now: float) -> Ticket:
        """Let a call through (its ticket), or raise ``CircuitOpenError``."""
        with self._lock:
            if self._state == "open":
                waited_s = now - self._opened_at
                if waited_s < settings.open_s:
                    raise CircuitOpenError(self.node, settings.open_s - waited_s)
                self._move("half_open", now)
            if self._state == "half_open":
                if self._probes_in_flight >= settings.half_open_max_calls:
                    raise CircuitOpenError(self.node, 0.0)
                self._probes_in_flight += 1
                return Ticket(self._generation, probe=True)
            return Ticket(self._generation, probe=False)

    def on_success(self, ticket: Ticket, now: float) -> None:
        """Record a call that answered: resets the failure count; a probe closes the breaker."""
        with self._lock:
            if ticket.generation != self._generation:
                return
            if ticket.probe:
                self._move("closed", now)
            else:
                self._consecutive_failures = 0

    def on_failure(self, ticket: Ticket, settings: BreakerSettings, now: float) -> None:
        """Record a failed or timed-out call: may open the breaker."""
        with self._lock:
            if ticket.generation != self._generation:
                return
            if ticket.probe:
                self._move("open", now)
                return
            self._consecutive_failures += 1
            if self._consecutive_failures >= settings.failure_threshold:
                self._move("open", now)

    def on_abandoned(self, ticket: Ticket) -> None:
        """Release a probe whose call ended with no outcome (the request was cancelled)."""
        with self._lock:
            if ticket.probe and ticket.generation == self._generation:
                self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def state(self, settings: BreakerSettings, now: float) -> State:
        """The state as the next call would see it (open turns half-open once ``open_s`` ends)."""
        with self._lock:
            if self._state == "open" and now - self._opened_at >= settings.open_s:
                return "half_open"
            return self._state

    def snapshot(self, settings: BreakerSettings, now: float) -> dict[str, object]:
        """State and failure count, for /health."""
        state = self.state(settings, now)
        with self._lock:
            return {"state": state, "consecutive_failures": self._consecutive_failures}


class BreakerRegistry:
    """One breaker per node name, created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, node: str) -> CircuitBreaker:
        """The breaker of ``node``."""
        with self._lock:
            breaker = self._breakers.get(node)
            if breaker is None:
                breaker = self._breakers[node] = CircuitBreaker(node)
            return breaker

    def snapshot(self, settings: BreakerSettings, now: float) -> dict[str, dict[str, object]]:
        """Every known breaker's state, by node name."""
        with self._lock:
            breakers = dict(self._breakers)
        return {name: b.snapshot(settings, now) for name, b in sorted(breakers.items())}


class FallbackGate:
    """Counts fallback model runs in this replica, refusing more than the live limit.

    Not a waiting semaphore: a request that finds the gate full is shed at once (503), so
    no queue of fallback work builds up in the ingress.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0

    def try_enter(self, limit: int) -> bool:
        """Take a slot when fewer than ``limit`` are taken; False when full."""
        with self._lock:
            if self.running >= limit:
                return False
            self.running += 1
            return True

    def leave(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.running = max(0, self.running - 1)
