"""Aspect sentiment of a text: checks, the AspectSentiment node, and its fallback.

The request goes to the node in one handle call with a timeout; when the node fails or times
out, VADER over a window of words around each term answers here (`WindowVaderAspects`,
torch-free), marked degraded. A graph without the node answers 422 feature_not_enabled.
"""

from __future__ import annotations

import asyncio

from configs.ingress import LimitsConfig
from deployments.ingress.calls import answer_degraded, call_node, fallback_slot, note_degraded
from deployments.ingress.schemas.common import ModelRef
from deployments.ingress.schemas.sentiment import (
    AspectSentimentRequest,
    AspectSentimentResult,
    AspectSentimentScores,
    AspectTermResult,
    CategorySentimentResult,
)
from deployments.ingress.services.validation import check_text
from deployments.ingress.state import IngressState
from models.answers import Answer, ModelInfo
from models.answers import ModelRef as NodeModelRef
from models.aspect_types import (
    ASPECT_CATEGORIES,
    AspectAnswer,
    AspectRequest,
)
from models.exceptions import InvalidInputError, OverloadedError

# The node key in the graph, and the name of the feature when the graph lacks the node.
NODE = "aspects"
FEATURE = "aspect sentiment"


def check_aspect_request(body: AspectSentimentRequest, limits: LimitsConfig) -> AspectRequest:
    """The node request for a body, or InvalidInputError naming the bad field."""
    text = check_text(body.text, "text", limits)
    if body.aspects is not None and body.categories is not None:
        raise InvalidInputError(
            "categories",
            "send either aspects or categories, not both (categories: the 8 "
            "aspect categories; aspects: terms that occur in the text)",
        )
    if body.aspects is not None:
        _check_count("aspects", len(body.aspects), limits)
        for index, aspect in enumerate(body.aspects):
            field = f"aspects[{index}]"
            if not aspect.strip():
                raise InvalidInputError(field, f"{field} is empty; send a term or drop it")
            if len(aspect) > limits.max_aspect_chars:
                raise InvalidInputError(
                    field,
                    f"{field} has {len(aspect)} characters; the limit is {limits.max_aspect_chars}",
                )
        return AspectRequest(text, aspects=tuple(body.aspects))
    if body.categories is not None:
        _check_count("categories", len(body.categories), limits)
        for index, category in enumerate(body.categories):
            if category not in ASPECT_CATEGORIES:
                field = f"categories[{index}]"
                raise InvalidInputError(
                    field,
                    f"{field} is {category[:40]!r}; use one of {', '.join(ASPECT_CATEGORIES)}",
                )
        return AspectRequest(text, categories=tuple(body.categories))
    return AspectRequest(text)


def _check_count(field: str, count: int, limits: LimitsConfig) -> None:
    if count == 0:
        raise InvalidInputError(field, f"{field} is empty; send at least one, or leave it out")
    if count > limits.max_aspects:
        raise InvalidInputError(
            field, f"{field} has {count} items; the limit is {limits.max_aspects} per request"
        )


def _scores(values: dict[str, float]) -> AspectSentimentScores:
    return AspectSentimentScores(
        positive=values["positive"], negative=values["negative"], neutral=values["neutral"]
    )


def aspect_result(
    answer: AspectAnswer,
    model: NodeModelRef | ModelInfo,
    degraded_reason: str | None,
    max_aspects: int,
) -> AspectSentimentResult:
    """The HTTP answer for a node's (or the fallback's) answer; extracted terms are cut to
    `max_aspects`."""
    return AspectSentimentResult(
        mode=answer.mode,
        aspects=[
            AspectTermResult(
                aspect=item.aspect,
                found=item.found,
                label=item.label,  # type: ignore[arg-type]
                scores=_scores(item.scores) if item.scores is not None else None,
                spans=[(start, end) for start, end in item.spans],
            )
            for item in answer.aspects[:max_aspects]
        ],
        categories=[
            CategorySentimentResult(
                category=item.category,
                label=item.label,  # type: ignore[arg-type]
                scores=_scores(item.scores),
            )
            for item in answer.categories
        ],
        model=ModelRef.of(model),
        degraded=degraded_reason is not None,
        degraded_reason=degraded_reason,
    )


async def analyze_aspects(state: IngressState, request: AspectRequest) -> AspectSentimentResult:
    """Sentiment per aspect of one checked request, from the node or, failing that, the
    VADER-window fallback (degraded)."""
    handle = state.node(NODE, FEATURE)  # 422 feature_not_enabled without the node
    limit = state.config.limits.max_aspects
    try:
        output: Answer[AspectAnswer] = await call_node(
            state, handle.predict, state.config.timeouts.aspects_s, request
        )
        if output.degraded_reason is not None:
            note_degraded(NODE, output.degraded_reason)
        return aspect_result(output.result, output.model, output.degraded_reason, limit)
    except OverloadedError:
        raise
    except Exception as exc:  # any node failure: answer from the fallback, say so
        reason = answer_degraded(NODE, exc)
    model = await state.fallbacks.aspects.get()
    async with fallback_slot(state, NODE):
        answers = await asyncio.to_thread(model.predict_batch, [request])
    return aspect_result(answers[0], model.info, reason, limit)
