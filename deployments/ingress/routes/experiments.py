"""Statistics of A/B and shadow experiments: ``/api/v1/experiments[/{name}]``.

The statistics are those of the ingress replica that answers (each replica counts what it
routed); they start again when an experiment's config changes.
"""

from __future__ import annotations

from deployments.ingress.deps import State, api_router
from deployments.ingress.schemas.common import ErrorBody
from deployments.ingress.schemas.experiments import ExperimentList, ExperimentReport
from deployments.ingress.services import experiments

router = api_router(tags=["Experiments"])


@router.get("/api/v1/experiments")
async def list_experiments(state: State) -> ExperimentList:
    """The configured experiments: name, task, mode and whether each is enabled."""
    return experiments.list_experiments(state)


@router.get(
    "/api/v1/experiments/{name}",
    responses={404: {"model": ErrorBody, "description": "No experiment of that name."}},
)
async def get_experiment(name: str, state: State) -> ExperimentReport:
    """Per-arm counts and latency; for shadow experiments agreement and correlation."""
    return experiments.experiment_report(state, name)
