"""Sentiment of texts: ``/api/v1/sentiment/{analyze,batch}``, and per aspect of a text:
``/api/v1/sentiment/aspects``."""

from __future__ import annotations

from deployments.ingress.deps import Limits, State, api_router
from deployments.ingress.schemas.common import TextBatchRequest, TextRequest
from deployments.ingress.schemas.sentiment import (
    AspectSentimentRequest,
    AspectSentimentResult,
    SentimentBatchResult,
    SentimentResult,
)
from deployments.ingress.services.aspects import analyze_aspects, check_aspect_request
from deployments.ingress.services.text import SENTIMENT, classify
from deployments.ingress.services.validation import check_text, check_texts

router = api_router(tags=["Sentiment"])


@router.post("/api/v1/sentiment/analyze")
async def analyze_sentiment(body: TextRequest, state: State, limits: Limits) -> SentimentResult:
    """Sentiment of one text: label, scores per label, confidence, model."""
    text = check_text(body.text, "text", limits)
    return (await classify(state, SENTIMENT, [text], body.user_id))[0]


@router.post("/api/v1/sentiment/batch")
async def analyze_sentiment_batch(
    body: TextBatchRequest, state: State, limits: Limits
) -> SentimentBatchResult:
    """Sentiment of up to `max_batch_texts` texts in one request."""
    texts = check_texts(body.texts, limits)
    return SentimentBatchResult(results=await classify(state, SENTIMENT, texts, body.user_id))


@router.post("/api/v1/sentiment/aspects")
async def analyze_aspect_sentiment(
    body: AspectSentimentRequest, state: State, limits: Limits
) -> AspectSentimentResult:
    """Sentiment of each aspect of one text: the terms given (each with its spans; a term not
    in the text is `found: false` with no label), the terms the model finds when none are
    given, or the given aspect categories."""
    return await analyze_aspects(state, check_aspect_request(body, limits))
