"""Experiment routes of the ingress: the statistics of A/B and shadow experiments.

Also the glue the text routes use: tagging answers with their variant and starting shadow
copies (``deployments/ingress/experiments.py`` holds the logic, free of Ray and FastAPI).

The statistics are those of the ingress replica that answers (each replica counts what it
routed); they start again when an experiment's config changes.
"""

import logging
from collections.abc import Callable
from typing import Any

from fastapi import Depends

from deployments.ingress import experiments
from deployments.ingress.experiments import ArmChoice, Summary, node_key, sentiment_score
from deployments.ingress.http import app, call_node, error_response, require_api_key
from deployments.ingress.routes.base import RouteGroup
from deployments.ingress.schemas.common import ErrorBody, ModerationResult
from deployments.ingress.schemas.experiments import (
    ExperimentList,
    ExperimentReport,
    ExperimentSummary,
)

logger = logging.getLogger("ray.serve")


# Always `experiments.REGISTRY`, never an imported name: this module is pickled by value, and
# so would the registry be, leaving the routes a copy that reconfigure() never updates.


class ExperimentRoutes(RouteGroup):
    """Read-only views of the experiments in the ingress's user_config."""

    @app.get(
        "/api/v1/experiments",
        response_model=ExperimentList,
        tags=["Experiments"],
        dependencies=[Depends(require_api_key)],
    )
    async def list_experiments(self) -> ExperimentList:
        """The configured experiments: name, task, mode and whether each is enabled."""
        summaries = []
        for name in experiments.REGISTRY.names():
            state = experiments.REGISTRY.get(name)
            if state is not None:
                config = state.config
                summaries.append(
                    ExperimentSummary(
                        name=name, task=config.task, mode=config.mode, enabled=config.enabled
                    )
                )
        return ExperimentList(experiments=summaries)

    @app.get(
        "/api/v1/experiments/{name}",
        response_model=ExperimentReport,
        tags=["Experiments"],
        dependencies=[Depends(require_api_key)],
        responses={404: {"model": ErrorBody, "description": "No experiment of that name."}},
    )
    async def get_experiment(self, name: str) -> Any:
        """Per-arm counts and latency; for shadow experiments agreement and correlation."""
        state = experiments.REGISTRY.get(name)
        if state is None:
            known = ", ".join(experiments.REGISTRY.names()) or "none configured"
            return error_response(
                404,
                "experiment_not_found",
                f"no experiment named {name[:64]!r}; known experiments: {known}",
                "name",
            )
        return ExperimentReport.model_validate(state.snapshot())


def tag_results(results: list[Any], choice: ArmChoice) -> list[Any]:
    """Name the variant that answered and the experiment that chose it on each result."""
    for result in results:
        result.variant, result.experiment = choice.variant, choice.experiment
    return results


def shadow_copy(
    group: RouteGroup,
    choice: ArmChoice,
    texts: list[str],
    live: list[Summary],
    summarise: Callable[[Any], Summary],
) -> None:
    """Copy a request to its shadow candidate in the background, when ``choice`` has one.

    ``live`` summarises the live answers (decision, score), one per text; ``summarise`` does
    the same for one raw candidate output. Never raises and never waits for the candidate.
    """
    state = choice.shadow
    if state is None or state.config.candidate is None:
        return
    try:
        handle = group.nodes[node_key(choice.task, state.config.candidate)]
        timeout_s = state.config.timeout_s

        async def call() -> list[Any]:
            if len(texts) == 1:
                return [await call_node(handle.predict, timeout_s, texts[0])]
            return list(await call_node(handle.predict_many, timeout_s, texts))

        experiments.REGISTRY.launch_shadow(state, call, live, summarise)
    except Exception as exc:  # noqa: BLE001 - a shadow must never fail the live answer
        logger.warning("shadow copy for %s not started (%s)", state.name, type(exc).__name__)


def moderation_summary(result: ModerationResult) -> Summary:
    """What a moderation comparison looks at: the action and the overall score."""
    return result.action, result.overall


def sentiment_summary(result: dict[str, Any]) -> Summary:
    """What a sentiment comparison looks at: the label and the signed score."""
    return str(result["label"]), sentiment_score(result)
