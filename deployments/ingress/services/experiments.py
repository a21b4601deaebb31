"""Experiments seen from the services: tagging answers with their arm, starting shadow copies,
and the per-replica statistics the experiment routes show.

``deployments/ingress/experiments.py`` holds the logic (arm choice, statistics), free of Ray
and FastAPI; the replica's ``ExperimentRegistry`` is ``state.experiments``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from deployments.ingress.calls import call_node
from deployments.ingress.experiments import ArmChoice, Summary, node_key
from deployments.ingress.schemas.experiments import (
    ExperimentList,
    ExperimentReport,
    ExperimentSummary,
)
from deployments.ingress.state import IngressState
from models.exceptions import NotFoundError

logger = logging.getLogger("ray.serve")


class Tagged(Protocol):
    """An answer that names the variant and the experiment behind it."""

    variant: str | None
    experiment: str | None


TaggedT = TypeVar("TaggedT", bound=Tagged)


def tag_results(results: list[TaggedT], choice: ArmChoice) -> list[TaggedT]:
    """Name the variant that answered and the experiment that chose it on each result."""
    for result in results:
        result.variant, result.experiment = choice.variant, choice.experiment
    return results


def start_shadow(
    state: IngressState,
    choice: ArmChoice,
    texts: list[str],
    live: Sequence[Summary],
    summarise: Callable[[Any], Summary],
) -> None:
    """Copy a request to its shadow candidate in the background, when ``choice`` has one.

    ``live`` summarises the live answers (decision, score), one per text; ``summarise`` does
    the same for one raw candidate output. Never raises and never waits for the candidate.
    """
    experiment = choice.shadow
    if experiment is None or experiment.config.candidate is None:
        return
    try:
        handle = state.nodes[node_key(choice.task, experiment.config.candidate)]
        timeout_s = experiment.config.timeout_s

        async def call() -> list[Any]:
            if len(texts) == 1:
                return [await call_node(state, handle.predict, timeout_s, texts[0])]
            return list(await call_node(state, handle.predict_many, timeout_s, texts))

        state.experiments.launch_shadow(experiment, call, live, summarise)
    except Exception as exc:  # noqa: BLE001 - a shadow must never fail the live answer
        logger.warning("shadow copy for %s not started (%s)", experiment.name, type(exc).__name__)


def list_experiments(state: IngressState) -> ExperimentList:
    """The configured experiments: name, task, mode and whether each is enabled."""
    summaries = []
    for name in state.experiments.names():
        experiment = state.experiments.get(name)
        if experiment is not None:
            config = experiment.config
            summaries.append(
                ExperimentSummary(
                    name=name, task=config.task, mode=config.mode, enabled=config.enabled
                )
            )
    return ExperimentList(experiments=summaries)


def experiment_report(state: IngressState, name: str) -> ExperimentReport:
    """One experiment's statistics on this replica; NotFoundError for an unknown name."""
    experiment = state.experiments.get(name)
    if experiment is None:
        known = ", ".join(state.experiments.names()) or "none configured"
        raise NotFoundError(
            "name",
            f"no experiment named {name[:64]!r}; known experiments: {known}",
            "experiment_not_found",
        )
    return ExperimentReport.model_validate(experiment.snapshot())
