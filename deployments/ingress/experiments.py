"""A/B and shadow experiments between model variants: arm choice, shadow calls, statistics.

Pure logic (asyncio only: no Ray, no FastAPI) so it is unit-tested without a cluster. The
text service asks the replica's registry (``IngressState.experiments``) which node answers
(``choose(task, user_id)``), records the live latency on the returned choice, and hands shadow
copies to ``launch_shadow``.

Statistics are per ingress replica (each replica counts what it routed) and start again when
an experiment's config changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from configs.experiments import DEFAULT_ARM, ExperimentConfig
from deployments import metrics

logger = logging.getLogger("ray.serve")

T = TypeVar("T")
# What a comparison needs from one answer: its decision (an action or a label) and its score.
Summary = tuple[str, float]

UNASSIGNED = "unassigned"
LATENCY_WINDOW = 2048
TIMEOUT_GRACE_S = 0.5


def assignment_point(experiment: str, user_id: str) -> float:
    """Where ``user_id`` falls in [0, 1) for ``experiment``: sha256, so sticky and uniform.

    The experiment name is part of the hash, so a user's arm in one experiment says nothing
    about their arm in another.
    """
    digest = hashlib.sha256(f"{experiment}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_arm(experiment: str, config: ExperimentConfig, user_id: str) -> str:
    """The name of the A/B arm ``user_id`` belongs to (cumulative shares, in arm order)."""
    point = assignment_point(experiment, user_id)
    cumulative = 0.0
    for arm in config.arms:
        cumulative += arm.share
        if point < cumulative:
            return arm.name
    # Shares sum to 1 within rounding: a point above the rounded sum belongs to the last arm
    # that gets users at all.
    return next(arm.name for arm in reversed(config.arms) if arm.share > 0)


def node_key(task: str, variant: str | None) -> str:
    """The ingress's node name of ``variant`` of ``task`` (``moderation:v2``), or the main one."""
    if variant is None or variant == DEFAULT_ARM:
        return task
    return f"{task}:{variant}"


def missing_variant_nodes(
    experiments: Mapping[str, ExperimentConfig], nodes: Sequence[str]
) -> list[str]:
    """Node names that enabled ``experiments`` route to but the graph does not run."""
    present = set(nodes)
    return sorted(
        {
            node_key(config.task, variant)
            for config in experiments.values()
            if config.enabled
            for variant in config.variants()
        }
        - present
    )


class LatencyWindow:
    """The latest ``size`` latencies, for percentiles over recent traffic."""

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, latency_s: float) -> None:
        """Record one latency in seconds."""
        self._values.append(latency_s)

    def percentile(self, q: float) -> float | None:
        """The nearest-rank ``q`` percentile (0-100) of the window; None when it is empty."""
        if not self._values:
            return None
        ordered = sorted(self._values)
        rank = max(1, math.ceil(q / 100.0 * len(ordered)))
        return ordered[rank - 1]

    def summary(self) -> dict[str, float | None]:
        """p50, p95 and p99 in seconds."""
        return {
            "latency_p50_s": self.percentile(50),
            "latency_p95_s": self.percentile(95),
            "latency_p99_s": self.percentile(99),
        }


class RunningCorrelation:
    """Pearson correlation from running sums, so no pair is kept."""

    def __init__(self) -> None:
        self.n = 0
        self._sx = self._sy = self._sxx = self._syy = self._sxy = 0.0

    def add(self, x: float, y: float) -> None:
        """Add one pair."""
        self.n += 1
        self._sx += x
        self._sy += y
        self._sxx += x * x
        self._syy += y * y
        self._sxy += x * y

    def value(self) -> float | None:
        """The correlation; None with fewer than two pairs or when one side never varies."""
        if self.n < 2:
            return None
        cov = self.n * self._sxy - self._sx * self._sy
        var_x = self.n * self._sxx - self._sx * self._sx
        var_y = self.n * self._syy - self._sy * self._sy
        if var_x <= 1e-12 or var_y <= 1e-12:
            return None
        return max(-1.0, min(1.0, cov / math.sqrt(var_x * var_y)))


@dataclass
class ArmStats:
    """Requests one arm answered (or, for a shadow candidate, was sent) and their latency."""

    requests: int = 0
    errors: int = 0
    latency: LatencyWindow = field(default_factory=LatencyWindow)

    def snapshot(self) -> dict[str, Any]:
        """Counts and latency percentiles."""
        return {"requests": self.requests, "errors": self.errors, **self.latency.summary()}


@dataclass
class ShadowStats:
    """How a shadow candidate compared with the live answers."""

    compared: int = 0
    agreed: int = 0
    errors: int = 0
    timeouts: int = 0
    skipped: int = 0
    in_flight: int = 0
    correlation: RunningCorrelation = field(default_factory=RunningCorrelation)

    def compare(self, live: Summary, shadow: Summary) -> None:
        """Count one item answered by both: same decision or not, and the score pair."""
        self.compared += 1
        self.agreed += live[0] == shadow[0]
        self.correlation.add(live[1], shadow[1])

    def agreement_rate(self) -> float | None:
        """Share of compared items with the same decision; None before the first one."""
        return self.agreed / self.compared if self.compared else None

    def snapshot(self) -> dict[str, Any]:
        """Counts, agreement and correlation."""
        return {
            "compared": self.compared,
            "agreement_rate": self.agreement_rate(),
            "score_correlation": self.correlation.value(),
            "errors": self.errors,
            "timeouts": self.timeouts,
            "skipped": self.skipped,
            "in_flight": self.in_flight,
        }


class ExperimentState:
    """One experiment's config and the statistics this replica has gathered for it."""

    def __init__(self, name: str, config: ExperimentConfig) -> None:
        self.name = name
        self.config = config
        self.started_at_s = time.time()
        self.unassigned = 0
        arm_names = (
            [arm.name for arm in config.arms]
            if config.mode == "ab"
            else [DEFAULT_ARM, config.candidate or ""]
        )
        self.arms: dict[str, ArmStats] = {name: ArmStats() for name in arm_names}
        self.shadow = ShadowStats() if config.mode == "shadow" else None

    def snapshot(self) -> dict[str, Any]:
        """Everything ``GET /api/v1/experiments/{name}`` shows, as plain data."""
        shares = {arm.name: arm.share for arm in self.config.arms}
        arms = []
        for arm_name, stats in self.arms.items():
            role = "candidate" if arm_name == self.config.candidate else "live"
            arms.append(
                {
                    "arm": arm_name,
                    "variant": None if arm_name == DEFAULT_ARM else arm_name,
                    "share": shares.get(arm_name),
                    "role": role,
                    **stats.snapshot(),
                }
            )
        return {
            "name": self.name,
            "task": self.config.task,
            "mode": self.config.mode,
            "enabled": self.config.enabled,
            "started_at_s": self.started_at_s,
            "unassigned": self.unassigned,
            "arms": arms,
            "shadow": self.shadow.snapshot() if self.shadow is not None else None,
        }


@dataclass
class ArmChoice:
    """Which node answers one request, and where its latency is recorded."""

    task: str
    node_key: str
    variant: str | None = None
    experiment: str | None = None
    arm: str | None = None
    state: ExperimentState | None = None

    def record(self, latency_s: float, ok: bool = True) -> None:
        """Record the live call's outcome on the arm that answered (no-op without an arm)."""
        if self.state is None or self.arm is None:
            return
        stats = self.state.arms[self.arm]
        stats.requests += 1
        if ok:
            stats.latency.add(latency_s)
        else:
            stats.errors += 1

    @property
    def shadow(self) -> ExperimentState | None:
        """The experiment to copy this request to, when it is a shadow experiment."""
        if self.state is not None and self.state.shadow is not None:
            return self.state
        return None


class ExperimentRegistry:
    """The experiments of one ingress replica and their statistics."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._states: dict[str, ExperimentState] = {}
        self._rng = rng or random.Random()
        # Strong references to running shadow tasks: the event loop keeps only weak ones.
        self._tasks: set[asyncio.Task[None]] = set()

    def configure(self, experiments: Mapping[str, ExperimentConfig]) -> None:
        """Adopt ``experiments``; an experiment whose config changed starts new statistics."""
        states: dict[str, ExperimentState] = {}
        for name, config in experiments.items():
            current = self._states.get(name)
            states[name] = (
                current
                if current is not None and current.config == config
                else ExperimentState(name, config)
            )
        self._states = states

    def names(self) -> list[str]:
        """Names of the configured experiments."""
        return sorted(self._states)

    def get(self, name: str) -> ExperimentState | None:
        """The experiment ``name``, or None."""
        return self._states.get(name)

    def choose(self, task: str, user_id: str | None) -> ArmChoice:
        """The node that answers a ``task`` request from ``user_id``.

        No enabled experiment: the main node. A/B: the user's sticky arm; without a user id
        the control (first) arm answers and the request counts as unassigned. Shadow: the
        main node answers (the copy is ``launch_shadow``'s business).
        """
        state = next(
            (s for s in self._states.values() if s.config.enabled and s.config.task == task),
            None,
        )
        if state is None:
            return ArmChoice(task=task, node_key=task)
        config = state.config
        if config.mode == "shadow":
            metrics.record_arm(state.name, DEFAULT_ARM)
            return ArmChoice(task, task, None, state.name, DEFAULT_ARM, state)
        if user_id is None:
            state.unassigned += 1
            metrics.record_arm(state.name, UNASSIGNED)
            control = config.arms[0].name
            # Not counted on the control arm: its numbers describe the assigned users only.
            return ArmChoice(task, node_key(task, control), _variant(control), state.name)
        arm = assign_arm(state.name, config, user_id)
        metrics.record_arm(state.name, arm)
        return ArmChoice(task, node_key(task, arm), _variant(arm), state.name, arm, state)

    def launch_shadow(
        self,
        state: ExperimentState,
        call: Callable[[], Awaitable[Sequence[T]]],
        live: Sequence[Summary],
        summarise: Callable[[T], Summary],
    ) -> asyncio.Task[None] | None:
        """Copy one request to the shadow candidate in the background; never waits for it.

        ``call`` makes the candidate's call (it is started inside the task); ``live`` holds
        the live answers' summaries, one per item; ``summarise`` turns each candidate answer
        into one. Returns the task, or None when the request was not sampled or the
        candidate already has ``max_in_flight`` calls running (counted as skipped).
        """
        shadow = state.shadow
        if shadow is None or state.config.candidate is None:
            return None
        if self._rng.random() >= state.config.sample_rate:
            return None
        if shadow.in_flight >= state.config.max_in_flight:
            shadow.skipped += 1
            return None
        # Counted before the task starts: nothing awaits between the check and this line.
        shadow.in_flight += 1
        metrics.record_arm(state.name, state.config.candidate)
        task = asyncio.get_running_loop().create_task(
            _run_shadow(state, call, list(live), summarise)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _variant(arm: str) -> str | None:
    return None if arm == DEFAULT_ARM else arm


async def _run_shadow(
    state: ExperimentState,
    call: Callable[[], Awaitable[Sequence[T]]],
    live: list[Summary],
    summarise: Callable[[T], Summary],
) -> None:
    """One shadow call: its own timeout, every failure counted and swallowed."""
    shadow, config = state.shadow, state.config
    assert shadow is not None and config.candidate is not None
    arm = state.arms[config.candidate]
    started_s = time.perf_counter()
    try:
        # A backstop: the route's call has timeout_s itself and cancels the node request when
        # it expires; this one, a little later, only bounds a call that ignores its timeout.
        answers = await asyncio.wait_for(_await(call), timeout=config.timeout_s + TIMEOUT_GRACE_S)
        summaries = [summarise(answer) for answer in answers]
        if len(summaries) != len(live):
            raise ValueError(f"candidate gave {len(summaries)} answers for {len(live)} items")
    except TimeoutError:
        arm.requests += 1
        arm.errors += 1
        shadow.timeouts += 1
        return
    except Exception as exc:  # noqa: BLE001 - a shadow must never fail anything live
        arm.requests += 1
        arm.errors += 1
        shadow.errors += 1
        logger.debug("shadow call of %s failed: %s", state.name, type(exc).__name__)
        return
    finally:
        shadow.in_flight -= 1
    arm.requests += 1
    arm.latency.add(time.perf_counter() - started_s)
    for live_item, shadow_item in zip(live, summaries, strict=True):
        shadow.compare(live_item, shadow_item)


async def _await(call: Callable[[], Awaitable[T]]) -> T:
    return await call()


def sentiment_score(result: Mapping[str, Any]) -> float:
    """One signed score of a sentiment answer: VADER's compound, else positive - negative."""
    compound = result.get("compound")
    if compound is not None:
        return float(compound)
    scores = result["scores"]
    return float(scores["positive"]) - float(scores["negative"])
