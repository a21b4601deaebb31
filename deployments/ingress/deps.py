"""What a route needs, as typed dependencies: the key check, the replica's state, its live
limits and the handles of the nodes it calls.

``build_fastapi_app`` keeps the state on ``app.state.ingress``; everything else derives
from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import APIKeyHeader

from configs.ingress import LimitsConfig
from deployments.ingress.middleware import API_KEY_HEADER
from deployments.ingress.services.images import image_node
from deployments.ingress.state import IngressState, NodeHandle

_api_key_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def require_api_key(key: str | None = Depends(_api_key_scheme)) -> str:
    """Documents the key in OpenAPI; ``GuardMiddleware`` has already enforced it."""
    return key or ""


def api_router(**options: Any) -> APIRouter:
    """A router of ``/api/`` routes: every route needs (and documents) the API key."""
    return APIRouter(dependencies=[Depends(require_api_key)], **options)


def get_state(request: Request) -> IngressState:
    """The replica's state, kept on the app by ``build_fastapi_app``."""
    state = request.app.state.ingress
    if not isinstance(state, IngressState):
        raise TypeError("the app has no IngressState; build it with build_fastapi_app(state)")
    return state


State = Annotated[IngressState, Depends(get_state)]


def get_limits(state: State) -> LimitsConfig:
    """The live request limits (``user_config.limits``) for this request."""
    return state.config.limits


Limits = Annotated[LimitsConfig, Depends(get_limits)]


def _image_node_dependency(name: str) -> Callable[[IngressState], NodeHandle]:
    def dependency(state: State) -> NodeHandle:
        return image_node(state, name, "image")

    return dependency


# Resolved before the body is read: a graph without the node answers 422 before any fetch.
NsfwNode = Annotated[NodeHandle, Depends(_image_node_dependency("nsfw"))]
TaggerNode = Annotated[NodeHandle, Depends(_image_node_dependency("tagger"))]
