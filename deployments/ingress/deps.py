"""What a route needs, as typed dependencies: the key check and its scopes, the replica's
state, its live limits and the handles of the nodes it calls.

``build_fastapi_app`` keeps the state on ``app.state.ingress``; everything else derives
from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import APIKeyHeader

from configs.ingress import LimitsConfig
from deployments.ingress.auth import (
    API_KEY_HEADER,
    MODERATOR_SCOPE,
    OPERATOR_SCOPE,
    AuthError,
    KeyIdentity,
    require_scope,
)
from deployments.ingress.services.images import image_node
from deployments.ingress.state import IngressState, NodeHandle
from deployments.metrics import record_api_request

_api_key_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def require_api_key(request: Request, key: str | None = Depends(_api_key_scheme)) -> KeyIdentity:
    """The identity of the request's key (documented in OpenAPI).

    ``GuardMiddleware`` has refused a missing or wrong key already; checked again here so a
    route never runs on a key the middleware did not see (defence in depth).
    """
    return get_state(request).api_keys.check(key)


ApiKey = Annotated[KeyIdentity, Depends(require_api_key)]


def _scope_dependency(scope: str) -> Callable[[KeyIdentity], KeyIdentity]:
    def dependency(identity: ApiKey) -> KeyIdentity:
        try:
            return require_scope(identity, scope)
        except AuthError:
            record_api_request(identity.key_id, "missing_scope")
            raise

    return dependency


# Resolved before the body is read: a key without the scope is 403, never a 422 on the body.
ModeratorKey = Annotated[KeyIdentity, Depends(_scope_dependency(MODERATOR_SCOPE))]
OperatorKey = Annotated[KeyIdentity, Depends(_scope_dependency(OPERATOR_SCOPE))]


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
DetectorNode = Annotated[NodeHandle, Depends(_image_node_dependency("detector"))]
