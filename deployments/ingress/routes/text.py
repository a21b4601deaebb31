"""Text routes of the ingress: moderation and sentiment.

Each route makes one handle call to one node; when the node fails or times out, the embedded
default answers here with ``degraded: true``.
"""

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Any

from fastapi import Depends

from deployments.ingress import experiments
from deployments.ingress.http import (
    app,
    call_node,
    call_node_one,
    check_text,
    check_texts,
    failure_reason,
    model_ref,
    note_degraded,
    require_api_key,
)
from deployments.ingress.routes.base import RouteGroup
from deployments.ingress.routes.experiments import (
    moderation_summary,
    sentiment_summary,
    shadow_copy,
    tag_results,
)
from deployments.ingress.routes.images import (
    check_post_images,
    combine_post_verdict,
    moderate_post_images,
)
from deployments.ingress.schemas.common import (
    ModelRef,
    ModerateRequest,
    ModerationBatchResult,
    ModerationResult,
    PostModerationResult,
    SentimentBatchResult,
    SentimentResult,
    TextBatchRequest,
    TextRequest,
)
from models.policy import decide_action
from storage.audit_log import ResultT, audit_results, replica_audit_log

logger = logging.getLogger("ray.serve")


def load_fallback(task: str) -> Any:
    """The embedded default model that answers for ``task`` when its node cannot."""
    if task == "moderation":
        from models.moderation import ProfanityModerator

        return ProfanityModerator.load()
    from models.sentiment import VaderSentiment

    return VaderSentiment.load()


class TextRoutes(RouteGroup):
    """Moderation and sentiment of texts."""

    # Embedded defaults, loaded on first use: they answer when a node cannot.
    _fallbacks: dict[str, Any]
    _fallback_lock: asyncio.Lock

    # ---- moderation ---------------------------------------------------------------------
    @app.post(
        "/api/v1/moderation/text",
        response_model=ModerationResult,
        tags=["Moderation"],
        dependencies=[Depends(require_api_key)],
    )
    async def moderate_text(self, body: TextRequest) -> ModerationResult:
        """Moderate one text: action, per-category scores and the model that answered."""
        text = check_text(body.text, "text")
        results = await self._moderate([text], user_id=body.user_id)
        return self._audited("text", [text], results, body)[0]

    @app.post(
        "/api/v1/moderation/batch",
        response_model=ModerationBatchResult,
        tags=["Moderation"],
        dependencies=[Depends(require_api_key)],
    )
    async def moderate_batch(self, body: TextBatchRequest) -> ModerationBatchResult:
        """Moderate up to `max_batch_texts` texts in one request."""
        texts = check_texts(body.texts)
        results = await self._moderate(texts, user_id=body.user_id)
        return ModerationBatchResult(results=self._audited("batch", texts, results, body))

    @app.post(
        "/api/v1/moderation/moderate",
        response_model=PostModerationResult,
        tags=["Moderation"],
        dependencies=[Depends(require_api_key)],
    )
    async def moderate_post(self, body: ModerateRequest) -> PostModerationResult:
        """Moderate a post before it is published: its text and its image URLs."""
        content = check_text(body.content, "content")
        if not body.images:
            text_result = (await self._moderate([content], user_id=body.user_id))[0]
            post = PostModerationResult(**text_result.model_dump(), text_moderation=text_result)
            return self._audited("moderate", [content], [post], body)[0]
        # 422 feature_not_enabled (no NSFW node) or too many URLs, before any work starts.
        urls = check_post_images(self, body.images)
        # Text and images are judged concurrently; the worst verdict wins (routes_images).
        text_results, image_results = await asyncio.gather(
            self._moderate([content], user_id=body.user_id), moderate_post_images(self, urls)
        )
        post = combine_post_verdict(text_results[0], image_results)
        return self._audited("moderate", [content], [post], body)[0]

    def _audited(
        self, route: str, texts: list[str], results: list[ResultT], body: Any
    ) -> list[ResultT]:
        """The results with their ``decision_id``, each recorded in the audit log (never fails).

        Recorded here, at the route, so every answer a client sees is logged exactly once.
        """
        log = replica_audit_log(self.config.audit)
        return audit_results(log, route, texts, results, user_id=getattr(body, "user_id", None))

    async def _moderate(
        self, texts: list[str], user_id: str | None = None
    ) -> list[ModerationResult]:
        timeout_s = self.config.timeouts.moderation_s
        # An enabled experiment may send the request to a variant node (the user's sticky A/B
        # arm) or copy it to a shadow candidate; else the main node answers.
        choice = experiments.REGISTRY.choose("moderation", user_id)
        try:
            handle = self.node(choice.node_key, "text moderation")
            started_s = time.perf_counter()
            if len(texts) == 1:
                outputs = [await call_node_one(handle, timeout_s, texts[0])]
            else:
                outputs = await call_node(handle.predict_many, timeout_s, texts)
            choice.record(time.perf_counter() - started_s)
            results = [self._verdict(o.result, asdict(o.model)) for o in outputs]
            shadow_copy(
                self,
                choice,
                texts,
                [moderation_summary(r) for r in results],
                lambda o: moderation_summary(self._verdict(o.result, asdict(o.model))),
            )
            return tag_results(results, choice)
        except Exception as exc:  # any node failure: answer from the fallback, say so
            choice.record(0.0, ok=False)
            reason = failure_reason(exc)
            note_degraded("moderation", reason)
            logger.warning("moderation node unavailable (%s); using fallback", reason)
        try:
            fallback = await self._fallback("moderation")
            scores = await asyncio.to_thread(fallback.predict_batch, texts)
            model = model_ref(fallback.info.as_dict())
            return [self._verdict(s, model, degraded_reason=reason) for s in scores]
        except Exception as exc:  # no model at all: never approve silently
            logger.error("moderation fallback failed (%s)", type(exc).__name__)
            return [
                self._verdict({}, None, degraded_reason=f"{reason}; fallback failed") for _ in texts
            ]

    def _verdict(
        self,
        scores: dict[str, float],
        model: dict[str, Any] | None,
        degraded_reason: str | None = None,
    ) -> ModerationResult:
        policy = self.config.moderation_policy
        action, flagged = decide_action(
            scores,
            policy.category_flag_thresholds,
            policy.category_reject_thresholds,
            policy.flag_threshold,
            policy.reject_threshold,
        )
        return ModerationResult(
            is_safe=action == "approve",
            action=action,  # type: ignore[arg-type]
            scores=scores,
            overall=max(scores.values(), default=0.0),
            flagged_categories=flagged,
            model=model,  # type: ignore[arg-type]
            degraded=degraded_reason is not None,
            degraded_reason=degraded_reason,
        )

    # ---- sentiment ----------------------------------------------------------------------
    @app.post(
        "/api/v1/sentiment/analyze",
        response_model=SentimentResult,
        tags=["Sentiment"],
        dependencies=[Depends(require_api_key)],
    )
    async def analyze_sentiment(self, body: TextRequest) -> SentimentResult:
        """Sentiment of one text: label, scores per label, confidence, model."""
        return (await self._sentiment([check_text(body.text, "text")], user_id=body.user_id))[0]

    @app.post(
        "/api/v1/sentiment/batch",
        response_model=SentimentBatchResult,
        tags=["Sentiment"],
        dependencies=[Depends(require_api_key)],
    )
    async def analyze_sentiment_batch(self, body: TextBatchRequest) -> SentimentBatchResult:
        """Sentiment of up to `max_batch_texts` texts in one request."""
        texts = check_texts(body.texts)
        return SentimentBatchResult(results=await self._sentiment(texts, user_id=body.user_id))

    async def _sentiment(
        self, texts: list[str], user_id: str | None = None
    ) -> list[SentimentResult]:
        timeout_s = self.config.timeouts.sentiment_s
        # As in _moderate: an enabled experiment may pick a variant node or copy to a shadow.
        choice = experiments.REGISTRY.choose("sentiment", user_id)
        try:
            handle = self.node(choice.node_key, "sentiment")
            started_s = time.perf_counter()
            if len(texts) == 1:
                outputs = [await call_node_one(handle, timeout_s, texts[0])]
            else:
                outputs = await call_node(handle.predict_many, timeout_s, texts)
            choice.record(time.perf_counter() - started_s)
            shadow_copy(
                self,
                choice,
                texts,
                [sentiment_summary(asdict(o.result)) for o in outputs],
                lambda o: sentiment_summary(asdict(o.result)),
            )
            answers = [
                SentimentResult(
                    **asdict(o.result), model=ModelRef(**asdict(o.model)), degraded=False
                )
                for o in outputs
            ]
            return tag_results(answers, choice)
        except Exception as exc:  # any node failure: answer from the fallback, say so
            choice.record(0.0, ok=False)
            reason = failure_reason(exc)
            note_degraded("sentiment", reason)
            logger.warning("sentiment node unavailable (%s); using fallback", reason)
        fallback = await self._fallback("sentiment")
        results = await asyncio.to_thread(fallback.predict_batch, texts)
        model = ModelRef(**model_ref(fallback.info.as_dict()))
        return [
            SentimentResult(**asdict(r), model=model, degraded=True, degraded_reason=reason)
            for r in results
        ]

    async def _fallback(self, task: str) -> Any:
        if not hasattr(self, "_fallbacks"):
            self._fallbacks, self._fallback_lock = {}, asyncio.Lock()
        async with self._fallback_lock:
            if task not in self._fallbacks:
                self._fallbacks[task] = await asyncio.to_thread(load_fallback, task)
            return self._fallbacks[task]
