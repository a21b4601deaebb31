"""Moderation and sentiment of texts: one path for every text classification task.

A request goes to the task's node (or the variant an experiment picks) in one handle call,
coalesced with concurrent single texts; when the node fails or times out, the task's embedded
model answers here with ``degraded: true``. A ``TextTask`` says what differs between tasks:
how an answer is shaped and summarised, and what to say when even the fallback fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from configs.ingress import IngressConfig, TimeoutsConfig
from deployments.ingress.calls import (
    answer_degraded,
    call_text_node,
    fallback_slot,
    note_degraded,
)
from deployments.ingress.experiments import Summary, sentiment_score
from deployments.ingress.schemas.common import ModelRef
from deployments.ingress.schemas.moderation import ModerationResult
from deployments.ingress.schemas.sentiment import SentimentResult
from deployments.ingress.services.audit import audited
from deployments.ingress.services.experiments import start_shadow, tag_results
from deployments.ingress.state import IngressState
from models.answers import Answer
from models.exceptions import OverloadedError
from models.policy import decide_action, degraded_decision

if TYPE_CHECKING:
    from models.moderation import ModerationScores
    from models.sentiment import SentimentScores

logger = logging.getLogger("ray.serve")

# Strings: the score types live in modules that import torch, which the ingress never needs.
ScoresT = TypeVar("ScoresT", "ModerationScores", "SentimentScores")
ResultT = TypeVar("ResultT", ModerationResult, SentimentResult)


@dataclass(frozen=True)
class TextTask(Generic[ScoresT, ResultT]):
    """One text classification task as the services see it: its node answers ``ScoresT``
    per text, the HTTP and gRPC answers are ``ResultT``."""

    # The node key, the experiment task, the degraded metric's node label, and the name of
    # the task's timeout and embedded fallback.
    name: Literal["moderation", "sentiment"]
    # Names the feature when the graph lacks the node.
    feature: str
    # The answer from one text's scores and the model that gave them; degraded with a reason.
    answer: Callable[[IngressConfig, ScoresT, ModelRef, str | None], ResultT]
    summarise: Callable[[ResultT], Summary]
    # The answer when the fallback fails too; None: the failure propagates.
    unanswered: Callable[[IngressConfig, str], ResultT] | None = None

    def timeout_s(self, timeouts: TimeoutsConfig) -> float:
        """How long the task's node may take."""
        return timeouts.moderation_s if self.name == "moderation" else timeouts.sentiment_s


async def classify(
    state: IngressState,
    task: TextTask[ScoresT, ResultT],
    texts: list[str],
    user_id: str | None = None,
) -> list[ResultT]:
    """One ``task`` answer per text, from the node, a variant or the embedded fallback."""
    config = state.config
    timeout_s = task.timeout_s(config.timeouts)
    # An enabled experiment may send the request to a variant node (the user's sticky A/B
    # arm) or copy it to a shadow candidate; else the main node answers.
    choice = state.experiments.choose(task.name, user_id)

    def answer(output: Answer[ScoresT]) -> ResultT:
        # A node serving its own fallback (a refused shipped head) answers degraded too.
        reason = output.degraded_reason
        return task.answer(config, output.result, ModelRef.of(output.model), reason)

    try:
        handle = state.node(choice.node_key, task.feature)
        started_s = time.perf_counter()
        outputs: list[Answer[ScoresT]] = await call_text_node(state, handle, timeout_s, texts)
        choice.record(time.perf_counter() - started_s)
        results = [answer(output) for output in outputs]
        for output in outputs:
            if output.degraded_reason is not None:
                note_degraded(task.name, output.degraded_reason)
        live = [task.summarise(result) for result in results]
        start_shadow(state, choice, texts, live, lambda output: task.summarise(answer(output)))
        return tag_results(results, choice)
    except Exception as exc:  # any node failure: answer from the fallback, say so
        choice.record(0.0, ok=False)
        reason = answer_degraded(task.name, exc)
    try:
        # Loaded once, outside the bound: waiting for the first load is not a model run, and
        # counting it would shed every request that arrives while the fallback loads.
        model = await state.fallbacks.text(task.name).get()
        # Bounded: with the breaker open every request would run its model here.
        async with fallback_slot(state, task.name):
            scores: list[ScoresT] = await asyncio.to_thread(model.predict_batch, texts)
        ref = ModelRef.of(model.info)
        return [task.answer(config, item, ref, reason) for item in scores]
    except OverloadedError:
        raise
    except Exception as exc:
        if task.unanswered is None:
            raise
        # No model at all: never approve silently.
        logger.error("%s fallback failed (%s)", task.name, type(exc).__name__)
        return [task.unanswered(config, f"{reason}; fallback failed") for _ in texts]


# ---- moderation -----------------------------------------------------------------------------
def verdict(
    config: IngressConfig,
    scores: ModerationScores,
    model: ModelRef | None,
    degraded_reason: str | None = None,
) -> ModerationResult:
    """The moderation answer for ``scores`` under the live policy's thresholds.

    A degraded answer (``degraded_reason`` set: the node failed, a fallback judged) is never
    ``approve``: at least the policy's ``degraded_action``.
    """
    policy = config.moderation_policy
    action, flagged = decide_action(
        scores,
        policy.category_flag_thresholds,
        policy.category_reject_thresholds,
        policy.flag_threshold,
        policy.reject_threshold,
    )
    if degraded_reason is not None:
        action = degraded_decision(action, policy.degraded_action)
    return ModerationResult(
        is_safe=action == "approve",
        action=action,  # type: ignore[arg-type]
        scores=scores,
        overall=max(scores.values(), default=0.0),
        flagged_categories=flagged,
        model=model,
        degraded=degraded_reason is not None,
        degraded_reason=degraded_reason,
    )


def unmoderated(config: IngressConfig, reason: str) -> ModerationResult:
    """No model could judge the text: flag it for review, never approve silently."""
    return verdict(config, {}, None, reason)


def moderation_summary(result: ModerationResult) -> Summary:
    """What a moderation comparison looks at: the action and the overall score."""
    return result.action, result.overall


MODERATION: TextTask[ModerationScores, ModerationResult] = TextTask(
    "moderation", "text moderation", verdict, moderation_summary, unanswered=unmoderated
)


async def moderate(
    state: IngressState, texts: list[str], user_id: str | None = None
) -> list[ModerationResult]:
    """One moderation verdict per (checked) text; never fails for a node outage."""
    return await classify(state, MODERATION, texts, user_id)


async def moderate_audited(
    state: IngressState, route: str, texts: list[str], user_id: str | None = None
) -> list[ModerationResult]:
    """``moderate``, each verdict recorded in the audit log under ``route``."""
    results = await moderate(state, texts, user_id)
    return audited(state, route, texts, results, user_id)


# ---- sentiment ------------------------------------------------------------------------------
def sentiment_answer(
    config: IngressConfig, sentiment: SentimentScores, model: ModelRef, degraded_reason: str | None
) -> SentimentResult:
    """The sentiment answer from a model's label, scores and confidence."""
    return SentimentResult(
        **asdict(sentiment),
        model=model,
        degraded=degraded_reason is not None,
        degraded_reason=degraded_reason,
    )


def sentiment_summary(result: SentimentResult) -> Summary:
    """What a sentiment comparison looks at: the label and the signed score."""
    return result.label, sentiment_score(result.model_dump())


# Sentiment has no ``unanswered``: when VADER fails too, the request fails.
SENTIMENT: TextTask[SentimentScores, SentimentResult] = TextTask(
    "sentiment", "sentiment", sentiment_answer, sentiment_summary
)
