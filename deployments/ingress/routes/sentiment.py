"""Sentiment of texts: ``/api/v1/sentiment/{analyze,batch}``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from deployments.ingress.deps import State, require_api_key
from deployments.ingress.schemas.common import TextBatchRequest, TextRequest
from deployments.ingress.schemas.sentiment import SentimentBatchResult, SentimentResult
from deployments.ingress.services.text import sentiment_of
from deployments.ingress.services.validation import check_text, check_texts

router = APIRouter(tags=["Sentiment"], dependencies=[Depends(require_api_key)])


@router.post("/api/v1/sentiment/analyze", response_model=SentimentResult)
async def analyze_sentiment(body: TextRequest, state: State) -> SentimentResult:
    """Sentiment of one text: label, scores per label, confidence, model."""
    text = check_text(body.text, "text", state.config.limits)
    return (await sentiment_of(state, [text], body.user_id))[0]


@router.post("/api/v1/sentiment/batch", response_model=SentimentBatchResult)
async def analyze_sentiment_batch(body: TextBatchRequest, state: State) -> SentimentBatchResult:
    """Sentiment of up to `max_batch_texts` texts in one request."""
    texts = check_texts(body.texts, state.config.limits)
    return SentimentBatchResult(results=await sentiment_of(state, texts, body.user_id))
