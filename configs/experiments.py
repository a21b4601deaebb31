"""Typed configuration of A/B and shadow experiments between model versions.

Variants (``AppArgs.moderation_variants`` / ``sentiment_variants``) are extra model nodes that
run side by side with the main node of a task. An experiment, declared in the ingress
``user_config`` (``IngressConfig.experiments``), decides which node answers a request:

- ``ab``: each user id is hashed onto one arm (sticky); the arm's node answers.
- ``shadow``: the main node answers; a sample of requests is copied to a ``candidate``
  variant in the background, and the two answers are compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from configs.base import Fraction
from configs.base import StrictModel as _Strict

# Variant and experiment names appear in deployment names, node keys, metric labels and URLs.
NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,32}$")
# The arm name of the main node of a task (a variant may not take it).
DEFAULT_ARM = "default"
SHARE_TOLERANCE = 1e-6


def check_name(kind: str, name: str) -> str:
    """``name`` when it is 1-32 characters of ``[a-z0-9_-]`` and not "default", else ValueError."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"{kind} name {name!r} is not valid; use 1 to 32 characters of a-z, 0-9, '_' or '-'"
        )
    if name == DEFAULT_ARM:
        raise ValueError(
            f'{kind} name "default" is reserved for the main node; choose another name'
        )
    return name


def check_variant_names(kind: str, variants: Iterable[str]) -> None:
    """Raise ValueError naming the first of ``variants`` (names) that is not valid."""
    for name in variants:
        check_name(kind, name)


class ExperimentArm(_Strict):
    """One arm of an A/B experiment: the node that answers and the share of users it gets."""

    variant: str | None = None
    """Variant node of the arm; null or "default" means the task's main node."""
    share: Fraction
    """Share of users sent to this arm; the arms' shares sum to 1."""

    @property
    def name(self) -> str:
        """The arm's name: its variant, or "default" for the main node."""
        return self.variant or DEFAULT_ARM

    @model_validator(mode="after")
    def _variant_name(self) -> ExperimentArm:
        if self.variant is not None and self.variant != DEFAULT_ARM:
            check_name("variant", self.variant)
        return self


class ExperimentConfig(_Strict):
    """One experiment on the moderation or sentiment task."""

    task: Literal["moderation", "sentiment"]
    """The task whose requests the experiment routes."""
    mode: Literal["ab", "shadow"]
    """How requests are routed. "ab": users are split between the arms by a sticky hash of their
    user id; "shadow": the main node answers and a copy goes to `candidate` in the background."""
    enabled: bool = True
    """Route requests by this experiment; at most one enabled experiment per task."""
    arms: list[ExperimentArm] = Field(default_factory=list)
    """ab only: two or more arms whose shares sum to 1; the first is the control, which also
    answers requests without a user id."""
    candidate: str | None = None
    """shadow only: the variant that gets a copy of the requests."""
    sample_rate: Fraction = 1.0
    """shadow only: share of requests copied."""
    max_in_flight: int = Field(default=8, ge=1, le=1024)
    """shadow only: most shadow calls running at once in one ingress replica; a request over it
    is not copied (counted as skipped)."""
    timeout_s: float = Field(default=5.0, gt=0.0, le=60.0)
    """shadow only: wait for the candidate's answer."""

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if self.mode == "ab":
            self._check_ab()
        else:
            self._check_shadow()
        return self

    def _check_ab(self) -> None:
        if len(self.arms) < 2:
            raise ValueError(
                f"an ab experiment needs at least two arms, got {len(self.arms)}; "
                'add e.g. [{variant: null, share: 0.5}, {variant: "v2", share: 0.5}]'
            )
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms {names} name a variant twice; each arm needs its own node")
        total = math.fsum(arm.share for arm in self.arms)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"arm shares sum to {total:g}; they must sum to 1")
        if self.candidate is not None:
            raise ValueError(
                f"candidate={self.candidate!r} is for shadow experiments; remove it or set "
                'mode: "shadow"'
            )

    def _check_shadow(self) -> None:
        if self.arms:
            raise ValueError(
                "arms are for ab experiments; a shadow experiment has the main node answer and "
                "copies requests to `candidate`: remove arms"
            )
        if self.candidate is None or self.candidate == DEFAULT_ARM:
            raise ValueError(
                f"a shadow experiment needs candidate, the variant to copy requests to; got "
                f"{self.candidate!r}"
            )
        check_name("candidate variant", self.candidate)

    def variants(self) -> list[str]:
        """The variant nodes this experiment sends requests to (not the main node)."""
        if self.mode == "shadow":
            return [self.candidate] if self.candidate else []
        return [arm.name for arm in self.arms if arm.name != DEFAULT_ARM]


def check_experiments(experiments: dict[str, ExperimentConfig]) -> dict[str, ExperimentConfig]:
    """Valid experiment names and at most one enabled experiment per task, else ValueError."""
    active: dict[str, str] = {}
    for name, experiment in experiments.items():
        check_name("experiment", name)
        if not experiment.enabled:
            continue
        if experiment.task in active:
            raise ValueError(
                f"experiments {active[experiment.task]!r} and {name!r} are both enabled for "
                f"task {experiment.task!r}; enable at most one experiment per task"
            )
        active[experiment.task] = name
    return experiments


Experiments = Annotated[dict[str, ExperimentConfig], AfterValidator(check_experiments)]
