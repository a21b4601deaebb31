"""The ingress's FastAPI app, built inside each replica by ``build_fastapi_app(state)``.

Nothing about the app is pickled: ``Ingress.__serve_build_asgi_app__`` calls the factory after
the replica's constructor, with the replica's state. Unit tests call it with a fake state.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from configs.settings import get_settings
from deployments.ingress.auth import API_KEY_HEADER
from deployments.ingress.body_guard import install_body_guard
from deployments.ingress.errors import add_exception_handlers
from deployments.ingress.middleware import GuardMiddleware
from deployments.ingress.rate_limit import RateLimitMiddleware
from deployments.ingress.routes import (
    events,
    experiments,
    health,
    images,
    moderation,
    recommendations,
    replies,
    review,
    sentiment,
    trends,
)
from deployments.ingress.schemas.common import ErrorBody
from deployments.ingress.state import IngressState

ROUTERS = (
    health.router,
    health.detail_router,
    moderation.router,
    sentiment.router,
    images.router,
    events.router,
    recommendations.router,
    trends.router,
    replies.router,
    review.router,
    experiments.router,
)


def build_fastapi_app(state: IngressState) -> FastAPI:
    """The HTTP API over ``state``: guard and CORS middleware, error mapping, every router."""
    app = _routed_app()
    app.state.ingress = state
    install_body_guard(app, state)  # inside the guard: keys and size limits are checked first
    # Added before the guard, so it runs inside the key check: accepted keys only get a bucket.
    app.add_middleware(RateLimitMiddleware, state=state)
    app.add_middleware(GuardMiddleware, state=state)
    # Added last so it is outermost: CORS preflight requests carry no API key.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=get_settings().origins(),
        allow_methods=["GET", "POST"],
        allow_headers=[API_KEY_HEADER, "Content-Type"],
    )
    return app


def openapi_schema() -> dict[str, Any]:
    """The API's OpenAPI document, as a replica serves it at ``/openapi.json``.

    Built from the routers alone (middleware and state add no route), so no Ray, key or store
    is needed: ``python -m deployments.ingress.openapi`` writes it for the TypeScript client.
    """
    return _routed_app().openapi()


def _routed_app() -> FastAPI:
    """The app's metadata, routers and error mapping: what the OpenAPI document describes."""
    app = FastAPI(
        title="SocialPlay AI",
        version="0.1.0",
        description="Moderation, sentiment and more for a social network, served by Ray Serve.",
        responses={
            401: {"model": ErrorBody, "description": "Missing or wrong API key."},
            403: {"model": ErrorBody, "description": "The key lacks the scope the route needs."},
            413: {"model": ErrorBody, "description": "Body over the limit."},
            422: {"model": ErrorBody, "description": "Invalid field."},
        },
    )
    add_exception_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
