"""What /health reports: each node's model and state, breakers, audit log and coalescing."""

from __future__ import annotations

from importlib import metadata
from typing import Any

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


def service_version() -> str:
    """Installed version of this project."""
    try:
        return metadata.version("socialplay-ai")
    except metadata.PackageNotFoundError:
        return "unknown"


async def health_report(state: IngressState) -> dict[str, Any]:
    """Each node's model, version, device, batching and circuit breaker state."""
    config = state.config
    nodes: dict[str, Any] = {}
    circuits = breaker_states(state)
    for name, handle in state.nodes.items():
        try:
            # Unguarded: /health asks the node even while its breaker is open.
            info: NodeInfo = await call_node(
                state, handle.info, config.timeouts.health_s, guarded=False
            )
            nodes[name] = {"status": "ok", **info.as_json()}
        except Exception as exc:  # a broken node must not break /health
            nodes[name] = {"status": "unavailable", "reason": failure_reason(exc)}
    # Keyed like `nodes`; a node never called yet has a closed breaker.
    breakers = {
        name: circuits.get(node_name(handle), {"state": "closed", "consecutive_failures": 0})
        for name, handle in state.nodes.items()
    }
    healthy = all(node["status"] == "ok" for node in nodes.values()) and all(
        breaker["state"] != "open" for breaker in breakers.values()
    )
    return {
        "status": "ok" if healthy else "degraded",
        "service_version": service_version(),
        "api_keys": state.api_keys.mode,
        "nodes": nodes,
        "circuit_breakers": breakers,
        # Store kind, buffered/dropped decisions and the last store error.
        "audit": audit_status(state),
        # Coalesced node calls on this replica: batches sent and their mean size.
        "coalescing": {**config.coalesce.model_dump(), "nodes": coalescer_stats(state)},
    }
