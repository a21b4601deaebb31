"""Health: public ``/health`` (liveness: ok or degraded, no key) and the detailed report
behind an operator key (``/api/v1/health``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from deployments.ingress.deps import OperatorKey, State, api_router
from deployments.ingress.services.health import HealthStatus, health_report, public_status

router = APIRouter()
detail_router = api_router(tags=["Service"])


class Liveness(BaseModel):
    """Public liveness: the verdict of the last health check, nothing else."""

    status: HealthStatus


@router.get("/health", tags=["Service"])
async def health(state: State) -> Liveness:
    """ok or degraded, from a check at most a few seconds old (no API key needed)."""
    return Liveness(status=await public_status(state))


@detail_router.get("/api/v1/health")
async def health_detail(state: State, key: OperatorKey) -> dict[str, Any]:
    """Each node's model, version, device, batching and circuit breaker state, the audit log,
    coalescing and the key mode (needs a key with the operator scope)."""
    return await health_report(state)
