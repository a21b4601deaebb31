"""Calls from the ingress to its nodes: timeout, circuit breaker, coalescing, metrics.

Every service reaches a node through ``call_node`` (one handle call) or ``call_node_one`` (one
item, coalesced with concurrent items for the same node into one ``predict_many`` call).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ray.serve.exceptions import BackPressureError

from deployments.coalesce import CallCoalescer
from deployments.ingress.circuit import CircuitOpenError
from deployments.ingress.errors import back_pressure_error
from deployments.ingress.state import IngressState
from deployments.metrics import record_degraded, record_node_call
from models.answers import Answer
from models.exceptions import InvalidInputError, NodeUnavailableError, OverloadedError

# How often a request waiting for a fallback slot looks again (limits.fallback_slot_wait_s).
FALLBACK_SLOT_POLL_S = 0.01

logger = logging.getLogger("ray.serve")


def node_name(method: Any) -> str:
    """The deployment name behind a handle or method handle (``handle.predict``)."""
    return str(getattr(method, "deployment_name", None) or "unknown")


def result_version(result: Any) -> str:
    """``model.version`` of a node's answer (or of the first of a list of answers)."""
    if isinstance(result, list) and result:
        result = result[0]
    if isinstance(result, Answer) and result.model.version:
        return result.model.version
    return "unknown"


async def call_node(
    state: IngressState, method: Any, timeout_s: float, *args: Any, guarded: bool = True
) -> Any:
    """One handle call with a timeout; the request is cancelled on the node when it expires.

    ``guarded`` calls go through the node's circuit breaker (``CircuitOpenError`` without a
    call while it is open) and are counted in the node metrics; /health calls are not, so a
    health probe neither trips nor closes a breaker.

    Raises:
        OverloadedError: The node's queue is full (Ray's ``BackPressureError``: its
            ``max_queued_requests`` reached). A busy node is not a failing one: the breaker
            gets no verdict, and callers answer 503 with Retry-After instead of running the
            fallback model here, which would pile the overload into the ingress.
    """
    retry_after_s = state.config.limits.retry_after_s
    if not guarded:
        try:
            return await _call(method, timeout_s, args)
        except BackPressureError as exc:
            raise back_pressure_error(exc, retry_after_s) from exc
    node = node_name(method)
    settings = state.config.circuit_breaker
    breaker = state.breakers.get(node) if settings.enabled else None
    ticket = breaker.before_call(settings, time.monotonic()) if breaker is not None else None
    started = time.perf_counter()
    outcome: bool | None = None
    result: Any = None
    try:
        result = await _call(method, timeout_s, args)
        outcome = True
        return result
    except InvalidInputError:
        # The node answered and refused the input: it is healthy.
        outcome = True
        raise
    except BackPressureError as exc:
        # Shed before the node saw it: no verdict on the node (outcome stays None).
        raise back_pressure_error(exc, retry_after_s) from exc
    except Exception:
        outcome = False
        raise
    finally:
        if outcome is not None:
            record_node_call(node, result_version(result), time.perf_counter() - started, outcome)
        if breaker is not None and ticket is not None:
            if outcome is None:  # cancelled: no verdict on the node
                breaker.on_abandoned(ticket)
            elif outcome:
                breaker.on_success(ticket, time.monotonic())
            else:
                breaker.on_failure(ticket, settings, time.monotonic())


async def call_node_one(state: IngressState, handle: Any, timeout_s: float, item: Any) -> Any:
    """One item's answer from a model node, waiting at most `timeout_s` in all.

    With ``coalesce`` on (the default), concurrent items for the same node share one
    ``predict_many`` call (breaker, timeout and metrics apply to that call, as to any
    ``call_node``); off, this is ``call_node(handle.predict, ...)``. Either way the caller
    sees the node's answer for its item or the exception its call raised.
    """
    settings = state.config.coalesce
    if not settings.enabled:
        return await call_node(state, handle.predict, timeout_s, item)
    # Keyed by the handle's deployment: no method handle is built per request.
    key = f"{node_name(handle)}|{timeout_s}"
    coalescer = state.coalescers.get(key)
    if coalescer is None:
        method = handle.predict_many

        async def bulk_call(items: list[Any]) -> Any:
            return await call_node(state, method, timeout_s, items)

        coalescer = state.coalescers[key] = CallCoalescer(
            bulk_call,
            settings.max_batch_size,
            settings.batch_wait_timeout_s,
            settings.max_concurrent_batches,
        )
    # The wait for a free batch slot counts against the same timeout as the call itself.
    return await asyncio.wait_for(coalescer.submit(item), timeout=timeout_s)


async def call_text_node(
    state: IngressState, handle: Any, timeout_s: float, texts: list[str]
) -> list[Any]:
    """One answer per text: a single text is coalesced, a batch is one ``predict_many``."""
    if len(texts) == 1:
        return [await call_node_one(state, handle, timeout_s, texts[0])]
    return list(await call_node(state, handle.predict_many, timeout_s, texts))


async def _await_response(response: Any) -> Any:
    return await response


async def _call(method: Any, timeout_s: float, args: tuple[Any, ...]) -> Any:
    response = method.remote(*args)
    try:
        return await asyncio.wait_for(_await_response(response), timeout=timeout_s)
    except TimeoutError:
        response.cancel()
        raise


def failure_reason(exc: BaseException) -> str:
    """Short, log-safe reason for a failed node call (no payload, no message text)."""
    if isinstance(exc, CircuitOpenError):
        return "circuit open"
    if isinstance(exc, TimeoutError):
        return "node timed out"
    return f"node failed ({type(exc).__name__})"


def note_degraded(node: str, reason: str) -> None:
    """Count one answer given by a fallback instead of ``node`` (its route name, e.g.
    ``moderation``); ``reason`` is a ``failure_reason`` text, counted as one of three kinds
    ("circuit open", "timeout", "error") so the metric's labels stay few.
    """
    if reason.startswith("circuit open"):
        kind = "circuit open"
    elif reason.startswith("node timed out"):
        kind = "timeout"
    else:
        kind = "error"
    record_degraded(node, kind)


def answer_degraded(node: str, exc: BaseException) -> str:
    """The ``failure_reason`` of a node that a fallback answers for: counted and logged.

    Raises:
        OverloadedError: ``exc`` itself when it is one (the node's queue was full): shed
            load is answered 503 + Retry-After, not moved into a fallback in the ingress.
    """
    if isinstance(exc, OverloadedError):
        raise exc
    reason = failure_reason(exc)
    note_degraded(node, reason)
    logger.warning("%s node unavailable (%s); using fallback", node, reason)
    return reason


def breaker_states(state: IngressState) -> dict[str, dict[str, object]]:
    """Each node's circuit breaker (by deployment name), for /health."""
    return state.breakers.snapshot(state.config.circuit_breaker, time.monotonic())


def coalescer_stats(state: IngressState) -> dict[str, dict[str, float]]:
    """Batches and mean batch size of each node's coalescer on this replica (for /health)."""
    return {key.split("|")[0]: c.stats() for key, c in state.coalescers.items()}


def node_unavailable(
    node: str, exc: BaseException, *, label: str = "", what: str = "answer", hint: str = "retry"
) -> NodeUnavailableError | OverloadedError:
    """The error for ``node``'s failed call (``exc``), logged by reason only.

    ``label`` names the node in the message (default: ``node``); nothing about the request
    is logged. A full node queue stays an ``OverloadedError`` (503 with Retry-After).
    """
    if isinstance(exc, OverloadedError):
        return exc
    reason = failure_reason(exc)
    logger.warning("%s unavailable (%s)", node, reason)
    return NodeUnavailableError(node, reason, label=label, what=what, hint=hint)


@asynccontextmanager
async def fallback_slot(state: IngressState, node: str) -> AsyncIterator[None]:
    """Run a fallback model for ``node`` inside the bound ``limits.max_concurrent_fallbacks``.

    Raises:
        OverloadedError: The bound stays reached for ``limits.fallback_slot_wait_s`` (503
            with ``limits.retry_after_s``): while breakers are open every request would
            otherwise run its model here, on the ingress's small CPU share.
    """
    limits = state.config.limits
    # A short bounded wait, not an immediate refusal: a replica that dies fails all its
    # in-flight requests at once, and those should answer degraded, not 503.
    deadline_s = time.monotonic() + limits.fallback_slot_wait_s
    while not state.fallback_gate.try_enter(limits.max_concurrent_fallbacks):
        if time.monotonic() < deadline_s:
            await asyncio.sleep(FALLBACK_SLOT_POLL_S)
            continue
        raise OverloadedError(
            f"the {node} node is unavailable and {limits.max_concurrent_fallbacks} fallback "
            "answers are already running in this replica (limits.max_concurrent_fallbacks); "
            "retry after the Retry-After delay",
            limits.retry_after_s,
        )
    try:
        yield
    finally:
        state.fallback_gate.leave()
