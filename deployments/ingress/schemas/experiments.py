"""Response bodies of the experiment routes (``GET /api/v1/experiments[/{name}]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ArmReport(BaseModel):
    """One arm: the node it names and what this ingress replica saw of it."""

    arm: str = Field(description='Arm name: its variant, or "default" for the main node.')
    variant: str | None = Field(description="Variant node; null: the task's main node.")
    share: float | None = Field(description="A/B share of users; null in shadow experiments.")
    role: Literal["live", "candidate"] = Field(
        description='"candidate": the shadow variant, whose answers are only compared.'
    )
    requests: int = Field(description="Requests the arm answered (or shadow calls it got).")
    errors: int = Field(description="Of those, calls that failed or timed out.")
    latency_p50_s: float | None = Field(description="Median call latency over recent requests.")
    latency_p95_s: float | None = Field(description="95th percentile latency, seconds.")
    latency_p99_s: float | None = Field(description="99th percentile latency, seconds.")


class ShadowReport(BaseModel):
    """How the shadow candidate's answers compare with the live ones."""

    compared: int = Field(description="Items answered by both the live node and the candidate.")
    agreement_rate: float | None = Field(
        description="Share with the same action (moderation) or label (sentiment)."
    )
    score_correlation: float | None = Field(
        description=(
            "Pearson correlation of the overall score (moderation) or the signed sentiment "
            "score (compound, else positive - negative); null until it is defined."
        )
    )
    errors: int = Field(description="Shadow calls that failed (swallowed).")
    timeouts: int = Field(description="Shadow calls that ran past the experiment's timeout_s.")
    skipped: int = Field(description="Requests not copied because max_in_flight were running.")
    in_flight: int = Field(description="Shadow calls running now.")


class ExperimentReport(BaseModel):
    """One experiment's config summary and statistics of this ingress replica."""

    name: str
    task: Literal["moderation", "sentiment"]
    mode: Literal["ab", "shadow"]
    enabled: bool
    started_at_s: float = Field(
        description="Epoch seconds since which these statistics count (config change resets)."
    )
    unassigned: int = Field(
        description="A/B requests without a user id (answered by the control arm)."
    )
    arms: list[ArmReport]
    shadow: ShadowReport | None = Field(description="Shadow experiments only.")


class ExperimentSummary(BaseModel):
    """One configured experiment in the list."""

    name: str
    task: Literal["moderation", "sentiment"]
    mode: Literal["ab", "shadow"]
    enabled: bool


class ExperimentList(BaseModel):
    """The experiments in the ingress's user_config."""

    experiments: list[ExperimentSummary]
