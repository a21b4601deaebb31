"""The baseline: the service as the design document sketches it.

One plain FastAPI app in one uvicorn process: an ``async def`` route that checks the
``X-API-Key`` header and calls the model inline, one text per call (no batching, no thread
pool, no Ray), exactly like the sketch's ``TextModerator.predict(text)`` inside
``async def moderate_post``. Same route shape as the Ray service, same model classes.

Run: ``python -m bench.baseline_fastapi --port 8124 --kind profanity`` with the key in the
``API_KEYS`` environment variable (comma-separated; the first one is accepted too).
"""

from __future__ import annotations

import argparse
import hmac
import os
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel

from models.text_classifier import load_text_classifier


class TextRequest(BaseModel):
    """Body of ``POST /api/v1/moderation/text``."""

    text: str


def build_app(kind: str, path: str | None, api_keys: list[str]) -> FastAPI:
    """FastAPI app with ``/health`` and ``/api/v1/moderation/text`` on the given model.

    ``kind="minilm"``: ``/api/v1/embeddings/text`` on all-MiniLM-L6-v2 instead (the
    embedding workload of ``bench.embed_bench``), still one model call per request.
    """
    if kind == "minilm":
        return _embedding_app(path, api_keys)
    model = load_text_classifier("moderation", kind, path, "cpu")
    keys = [key.encode("utf-8") for key in api_keys]
    app = FastAPI(title="SocialPlay AI baseline (design-document sketch)")

    async def verify_api_key(x_api_key: str = Header(...)) -> str:
        supplied = x_api_key.encode("utf-8")
        if not any(hmac.compare_digest(supplied, key) for key in keys):
            raise HTTPException(status_code=403, detail="Invalid API key")
        return x_api_key

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/moderation/text", dependencies=[Depends(verify_api_key)])
    async def moderate_text(body: TextRequest) -> dict[str, Any]:
        if not body.text.strip():
            raise HTTPException(status_code=422, detail="text is empty")
        scores = model.predict_batch([body.text])[0]  # one model call per request, inline
        overall = max(scores.values(), default=0.0)
        return {"is_safe": overall < 0.5, "scores": scores, "overall": overall}

    return app


def _embedding_app(path: str | None, api_keys: list[str]) -> FastAPI:
    from models.embeddings import MiniLMEmbedder

    model = MiniLMEmbedder.load(path, "cpu")
    keys = [key.encode("utf-8") for key in api_keys]
    app = FastAPI(title="SocialPlay AI baseline (embeddings, one call per request)")

    async def verify_api_key(x_api_key: str = Header(...)) -> str:
        if not any(hmac.compare_digest(x_api_key.encode("utf-8"), key) for key in keys):
            raise HTTPException(status_code=403, detail="Invalid API key")
        return x_api_key

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/embeddings/text", dependencies=[Depends(verify_api_key)])
    async def embed_text(body: TextRequest) -> dict[str, Any]:
        return {"embedding": model.predict_batch([body.text])[0]}  # inline, one text

    return app


def main(argv: list[str] | None = None) -> None:
    """Parse options and serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8124)
    parser.add_argument(
        "--kind", choices=("profanity", "transformer", "minilm"), default="profanity"
    )
    parser.add_argument("--path", default=None, help="Checkpoint directory (transformer).")
    args = parser.parse_args(argv)
    api_keys = [k.strip() for k in os.environ.get("API_KEYS", "").split(",") if k.strip()]
    if not api_keys:
        raise SystemExit("set API_KEYS (comma-separated) for the baseline server")
    app = build_app(args.kind, args.path, api_keys)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
