"""Service routes of the ingress: ``/health``."""

from typing import Any

from deployments.ingress import state as ingress_state
from deployments.ingress.http import (
    app,
    breaker_states,
    call_node,
    coalescer_stats,
    failure_reason,
    node_name,
    service_version,
)
from deployments.ingress.routes.base import RouteGroup
from storage import audit_log


class ServiceRoutes(RouteGroup):
    """Routes about the service itself; no API key needed."""

    @app.get("/health", tags=["Service"])
    async def health(self) -> dict[str, Any]:
        """Each node's model, version, device, batching and circuit breaker state."""
        nodes: dict[str, Any] = {}
        circuits = breaker_states()
        for name, handle in self.nodes.items():
            try:
                # Unguarded: /health asks the node even while its breaker is open.
                info = await call_node(handle.info, self.config.timeouts.health_s, guarded=False)
                nodes[name] = {"status": "ok", **info.as_json()}
            except Exception as exc:  # a broken node must not break /health
                nodes[name] = {"status": "unavailable", "reason": failure_reason(exc)}
        # Keyed like `nodes`; a node never called yet has a closed breaker.
        breakers = {
            name: circuits.get(node_name(handle), {"state": "closed", "consecutive_failures": 0})
            for name, handle in self.nodes.items()
        }
        healthy = all(node["status"] == "ok" for node in nodes.values()) and all(
            breaker["state"] != "open" for breaker in breakers.values()
        )
        return {
            "status": "ok" if healthy else "degraded",
            "service_version": service_version(),
            "api_keys": ingress_state.STATE.key_mode,
            "nodes": nodes,
            "circuit_breakers": breakers,
            # Store kind, buffered/dropped decisions and the last store error (audit_log.py).
            "audit": audit_log.replica_audit_status(self.config.audit),
            # Coalesced node calls on this replica: batches sent and their mean size.
            "coalescing": {
                **self.config.coalesce.model_dump(),
                "nodes": coalescer_stats(),
            },
        }
