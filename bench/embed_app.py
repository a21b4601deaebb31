"""Bench-only Serve app: our Embedder node behind a minimal FastAPI ingress (one handle hop).

The service has no public "embed this text" route (the Embedder is reached through the
Recommender's event routes), so the embedding workload measures the node this way:

    proxy -> EmbedFront (POST /api/v1/embeddings/text, X-API-Key) -> Embedder (batched)

The front sends texts the way the service's ingress does (``deployments.coalesce``, settings
from ``args.coalesce``, an ``IngressConfig.coalesce`` dict): concurrent texts leave as one
``predict_many`` call when it is enabled, one ``predict`` call each when it is not.

``Embedder`` is the production deployment class, unchanged, with the model spec from the
app args (``backend: torch`` or ``backend: onnx`` with a gated artifact). Started by
``serve run`` from a config written by ``bench.embed_bench``.

No ``from __future__ import annotations`` here: ``serve.ingress`` pickles the FastAPI app, and
string annotations would turn ``self`` into a query parameter.
"""

import hmac
import os
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel
from ray import serve
from ray.serve.handle import DeploymentHandle

from configs.ingress import CoalesceConfig
from deployments.coalesce import CallCoalescer
from deployments.nodes.embedder import Embedder
from models.answers import Answer

front = FastAPI(title="bench: Embedder route")


class EmbedRequest(BaseModel):
    """Body of ``POST /api/v1/embeddings/text``."""

    text: str


@serve.deployment(name="EmbedFront", max_ongoing_requests=256)
@serve.ingress(front)
class EmbedFront:
    """Checks the key, forwards one text to the Embedder, returns its vector."""

    def __init__(self, embedder: DeploymentHandle, coalesce: dict[str, Any]) -> None:
        self._embedder = embedder
        self._keys = [key.encode() for key in os.environ.get("API_KEYS", "").split(",") if key]
        settings = CoalesceConfig.model_validate(coalesce)
        self._coalescer = (
            CallCoalescer(
                self._embed_many,
                settings.max_batch_size,
                settings.batch_wait_timeout_s,
                settings.max_concurrent_batches,
            )
            if settings.enabled
            else None
        )

    async def _embed_many(self, texts: list[str]) -> list[Answer[list[float]]]:
        return list(await self._embedder.predict_many.remote(texts))

    @front.get("/health")
    async def health(self) -> dict[str, str]:
        """Ready once the Embedder answers (the front is only routed to after it starts)."""
        return {"status": "ok"}

    @front.post("/api/v1/embeddings/text")
    async def embed(
        self, body: EmbedRequest, x_api_key: str = Header(default="")
    ) -> dict[str, Any]:
        """The text's unit vector and the model that computed it."""
        if not any(hmac.compare_digest(x_api_key.encode(), key) for key in self._keys):
            raise HTTPException(status_code=403, detail="invalid API key")
        if self._coalescer is not None:
            answer: Answer[list[float]] = await self._coalescer.submit(body.text)
        else:
            answer = await self._embedder.predict.remote(body.text)
        return {"embedding": answer.result, "model": asdict(answer.model)}


def build_app(args: dict[str, Any]) -> Any:
    """``serve run`` entry point: ``args.embedding_model`` is an EmbeddingModelSpec dict,
    ``args.coalesce`` an ``IngressConfig.coalesce`` dict (default: the service's default)."""
    embedder = Embedder.bind(args.get("embedding_model", {}))
    return EmbedFront.bind(embedder, args.get("coalesce", {}))
