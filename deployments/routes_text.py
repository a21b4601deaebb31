"""Text routes of the ingress: moderation and sentiment.

Each route makes one handle call to one node; when the node fails or times out, the embedded
default answers here with ``degraded: true``.
"""

import asyncio
import logging
from typing import Any

from fastapi import Depends

from deployments.http_app import (
    app,
    call_node,
    check_text,
    check_texts,
    failure_reason,
    model_ref,
    require_api_key,
)
from deployments.http_schemas import (
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
from deployments.routes_base import RouteGroup
from deployments.routes_images import (
    check_post_images,
    combine_post_verdict,
    moderate_post_images,
)
from models.policy import decide_action

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
        return (await self._moderate([text]))[0]

    @app.post(
        "/api/v1/moderation/batch",
        response_model=ModerationBatchResult,
        tags=["Moderation"],
        dependencies=[Depends(require_api_key)],
    )
    async def moderate_batch(self, body: TextBatchRequest) -> ModerationBatchResult:
        """Moderate up to `max_batch_texts` texts in one request."""
        return ModerationBatchResult(results=await self._moderate(check_texts(body.texts)))

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
            text_result = (await self._moderate([content]))[0]
            return PostModerationResult(**text_result.model_dump(), text_moderation=text_result)
        # 422 feature_not_enabled (no NSFW node) or too many URLs, before any work starts.
        urls = check_post_images(self, body.images)
        # Text and images are judged concurrently; the worst verdict wins (routes_images).
        text_results, image_results = await asyncio.gather(
            self._moderate([content]), moderate_post_images(self, urls)
        )
        return combine_post_verdict(text_results[0], image_results)

    async def _moderate(self, texts: list[str]) -> list[ModerationResult]:
        timeout_s = self.config.timeouts.moderation_s
        try:
            if len(texts) == 1:
                outputs = [
                    await call_node(
                        self.node("moderation", "text moderation").predict, timeout_s, texts[0]
                    )
                ]
            else:
                outputs = await call_node(
                    self.node("moderation", "text moderation").predict_many, timeout_s, texts
                )
            return [self._verdict(o["result"], o["model"]) for o in outputs]
        except Exception as exc:  # any node failure: answer from the fallback, say so
            reason = failure_reason(exc)
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
        return (await self._sentiment([check_text(body.text, "text")]))[0]

    @app.post(
        "/api/v1/sentiment/batch",
        response_model=SentimentBatchResult,
        tags=["Sentiment"],
        dependencies=[Depends(require_api_key)],
    )
    async def analyze_sentiment_batch(self, body: TextBatchRequest) -> SentimentBatchResult:
        """Sentiment of up to `max_batch_texts` texts in one request."""
        return SentimentBatchResult(results=await self._sentiment(check_texts(body.texts)))

    async def _sentiment(self, texts: list[str]) -> list[SentimentResult]:
        timeout_s = self.config.timeouts.sentiment_s
        try:
            if len(texts) == 1:
                outputs = [
                    await call_node(
                        self.node("sentiment", "sentiment").predict, timeout_s, texts[0]
                    )
                ]
            else:
                outputs = await call_node(
                    self.node("sentiment", "sentiment").predict_many, timeout_s, texts
                )
            return [
                SentimentResult(**o["result"], model=ModelRef(**o["model"]), degraded=False)
                for o in outputs
            ]
        except Exception as exc:  # any node failure: answer from the fallback, say so
            reason = failure_reason(exc)
            logger.warning("sentiment node unavailable (%s); using fallback", reason)
        fallback = await self._fallback("sentiment")
        results = await asyncio.to_thread(fallback.predict_batch, texts)
        model = ModelRef(**model_ref(fallback.info.as_dict()))
        return [
            SentimentResult(**r, model=model, degraded=True, degraded_reason=reason)
            for r in results
        ]

    async def _fallback(self, task: str) -> Any:
        if not hasattr(self, "_fallbacks"):
            self._fallbacks, self._fallback_lock = {}, asyncio.Lock()
        async with self._fallback_lock:
            if task not in self._fallbacks:
                self._fallbacks[task] = await asyncio.to_thread(load_fallback, task)
            return self._fallbacks[task]
