"""``/health``: the service and each node (no API key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from deployments.ingress.deps import State
from deployments.ingress.services.health import health_report

router = APIRouter()


@router.get("/health", tags=["Service"])
async def health(state: State) -> dict[str, Any]:
    """Each node's model, version, device, batching and circuit breaker state."""
    return await health_report(state)
