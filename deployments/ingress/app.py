"""The ingress's FastAPI app, built inside each replica by ``build_fastapi_app(state)``.

Nothing about the app is pickled: ``Ingress.__serve_build_asgi_app__`` calls the factory after
the replica's constructor, with the replica's state. Unit tests call it with a fake state.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from configs.settings import get_settings
from deployments.ingress.errors import add_exception_handlers
from deployments.ingress.middleware import API_KEY_HEADER, GuardMiddleware
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
    app = FastAPI(
        title="SocialPlay AI",
        version="0.1.0",
        description="Moderation, sentiment and more for a social network, served by Ray Serve.",
        responses={
            401: {"model": ErrorBody, "description": "Missing API key."},
            403: {"model": ErrorBody, "description": "Wrong API key."},
            413: {"model": ErrorBody, "description": "Body over the limit."},
            422: {"model": ErrorBody, "description": "Invalid field."},
        },
    )
    app.state.ingress = state
    # Added first, so it runs inside the key check: only accepted keys get a token bucket.
    app.add_middleware(RateLimitMiddleware, state=state)
    app.add_middleware(GuardMiddleware, state=state)
    # Added last so it is outermost: CORS preflight requests carry no API key.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=get_settings().origins(),
        allow_methods=["GET", "POST"],
        allow_headers=[API_KEY_HEADER, "Content-Type"],
    )
    add_exception_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
