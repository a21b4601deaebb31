"""Service routes of the ingress: ``/health``."""

from typing import Any

from deployments import ingress_state
from deployments.http_app import app, call_node, failure_reason, service_version
from deployments.routes_base import RouteGroup


class ServiceRoutes(RouteGroup):
    """Routes about the service itself; no API key needed."""

    @app.get("/health", tags=["Service"])
    async def health(self) -> dict[str, Any]:
        """Each node's model, version, device and batching."""
        nodes: dict[str, Any] = {}
        for name, handle in self.nodes.items():
            try:
                info = await call_node(handle.info, self.config.timeouts.health_s)
                nodes[name] = {"status": "ok", **info}
            except Exception as exc:  # a broken node must not break /health
                nodes[name] = {"status": "unavailable", "reason": failure_reason(exc)}
        healthy = all(node["status"] == "ok" for node in nodes.values())
        return {
            "status": "ok" if healthy else "degraded",
            "service_version": service_version(),
            "api_keys": ingress_state.STATE.key_mode,
            "nodes": nodes,
        }
