"""Health: public liveness (ok/degraded from a cached snapshot) and the detailed report.

The detailed report (each node's model and state, breakers, audit log, coalescing, the key
mode) names addresses, model paths and versions: it is served behind an operator key
(``GET /api/v1/health``). Public ``/health`` says only ``ok`` or ``degraded``, from the last
check, refreshed in the background at most every ``HEALTH_SNAPSHOT_MAX_AGE_S``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import metadata
from typing import Any, Literal

from deployments.ingress.calls import (
    breaker_states,
    call_node,
    coalescer_stats,
    failure_reason,
    node_name,
)
from deployments.ingress.services.audit import audit_status
from deployments.ingress.state import IngressState
from models.answers import NodeInfo

logger = logging.getLogger("ray.serve")

# Public /health answers from a check at most this old; a newer one starts in the background.
HEALTH_SNAPSHOT_MAX_AGE_S = 5.0

HealthStatus = Literal["ok", "degraded"]


def service_version() -> str:
    """Installed version of this project."""
    try:
        return metadata.version("socialplay-ai")
    except metadata.PackageNotFoundError:
        return "unknown"


async def _node_status(state: IngressState, handle: Any) -> dict[str, Any]:
    try:
        # Unguarded: /health asks the node even while its breaker is open.
        info: NodeInfo = await call_node(
            state, handle.info, state.config.timeouts.health_s, guarded=False
        )
        document = info.as_json()
        # A node that serves a fallback of its own (a refused shipped head) is up, degraded.
        status = "degraded" if document.get("degraded_reason") else "ok"
        return {"status": status, **document}
    except Exception as exc:  # a broken node must not break /health
        return {"status": "unavailable", "reason": failure_reason(exc)}


async def health_report(state: IngressState) -> dict[str, Any]:
    """Each node's model, version, device, batching and circuit breaker state (operators).

    The nodes are asked together, each within ``timeouts.health_s``; the verdict also
    refreshes the snapshot public ``/health`` answers from.
    """
    config = state.config
    circuits = breaker_states(state)
    names = list(state.nodes)
    answers = await asyncio.gather(*(_node_status(state, state.nodes[n]) for n in names))
    nodes = dict(zip(names, answers, strict=True))
    # Keyed like `nodes`; a node never called yet has a closed breaker.
    breakers = {
        name: circuits.get(node_name(handle), {"state": "closed", "consecutive_failures": 0})
        for name, handle in state.nodes.items()
    }
    healthy = all(node["status"] == "ok" for node in nodes.values()) and all(
        breaker["state"] != "open" for breaker in breakers.values()
    )
    status = "ok" if healthy else "degraded"
    state.health.status = status
    state.health.taken_at_s = time.monotonic()
    return {
        "status": status,
        "service_version": service_version(),
        "api_keys": state.api_keys.mode,
        "nodes": nodes,
        "circuit_breakers": breakers,
        # Store kind, buffered/dropped decisions and the last store error.
        "audit": audit_status(state),
        # Coalesced node calls on this replica: batches sent and their mean size.
        "coalescing": {**config.coalesce.model_dump(), "nodes": coalescer_stats(state)},
    }


async def _refresh(state: IngressState) -> None:
    try:
        await health_report(state)
    except Exception as exc:  # a failed check is a verdict, never a broken /health
        logger.warning("health check failed (%s)", type(exc).__name__)
        state.health.status = "degraded"
        state.health.taken_at_s = time.monotonic()


async def public_status(state: IngressState) -> HealthStatus:
    """``ok`` or ``degraded`` from the cached snapshot (what public ``/health`` answers).

    A stale snapshot starts one background refresh and is answered as it stands; only before
    the first check has finished does a caller wait for it (shared by every caller).
    """
    snapshot = state.health
    running = snapshot.refresh is not None and not snapshot.refresh.done()
    if not running and snapshot.age_s() >= HEALTH_SNAPSHOT_MAX_AGE_S:
        snapshot.refresh = asyncio.create_task(_refresh(state))
    if snapshot.status is None and snapshot.refresh is not None:
        # shield: a caller that disconnects must not cancel the check the others wait on.
        await asyncio.shield(snapshot.refresh)
    return "ok" if snapshot.status == "ok" else "degraded"
