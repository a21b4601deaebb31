"""gRPC methods of the ingress (``AIService`` in ``protos/ai_service.proto``).

Ray Serve's gRPC proxy calls these by RPC name with the request message. They check the API
key from the ``x-api-key`` metadata and reuse the HTTP routes' paths: ``_moderate`` (with its
fallback) for ModerateContent and ``rank_feed`` (validation, recommender call, unranked
fallback) for GetRecommendations. Domain errors become gRPC status codes here, as
``http_app`` maps them to HTTP status codes.

No ``from __future__ import annotations``: this module travels by value like the route
modules (see ``ingress.py``).
"""

import logging
from typing import Any

import grpc
from pydantic import ValidationError
from ray.serve.grpc_util import RayServegRPCContext

from deployments.ingress.http import API_KEY_HEADER, api_key_valid, check_text
from deployments.ingress.routes.base import RouteGroup
from deployments.ingress.schemas.common import ModerationResult
from deployments.ingress.schemas.recommender import FeedRequest
from deployments.protos import ai_service_pb2 as pb
from models.exceptions import FeatureNotEnabledError, InvalidInputError

logger = logging.getLogger("ray.serve")

API_KEY_METADATA = API_KEY_HEADER.lower()  # gRPC metadata keys are lower case


def _refuse(context: RayServegRPCContext, code: grpc.StatusCode, details: str) -> None:
    context.set_code(code)
    context.set_details(details)


def _auth_refusal(context: RayServegRPCContext) -> bool:
    """Set UNAUTHENTICATED / PERMISSION_DENIED on ``context`` unless the key is valid."""
    supplied = ""
    for key, value in context.invocation_metadata():
        if key.lower() == API_KEY_METADATA:
            supplied = value.strip()
    if not supplied:
        _refuse(
            context,
            grpc.StatusCode.UNAUTHENTICATED,
            f"send your API key in the {API_KEY_METADATA} metadata",
        )
        return True
    if not api_key_valid(supplied):
        _refuse(context, grpc.StatusCode.PERMISSION_DENIED, "the API key is not valid")
        return True
    return False


def _invalid(context: RayServegRPCContext, exc: Exception) -> None:
    """INVALID_ARGUMENT (or FAILED_PRECONDITION for a feature not enabled) with the field."""
    if isinstance(exc, FeatureNotEnabledError):
        _refuse(context, grpc.StatusCode.FAILED_PRECONDITION, exc.message)
    elif isinstance(exc, InvalidInputError):
        _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"{exc.field}: {exc.message}")
    elif isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "request"
        _refuse(context, grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {first.get('msg')}")
    else:
        raise TypeError(f"not an input error: {type(exc).__name__}")


def moderation_message(result: ModerationResult) -> pb.ModerationResponse:
    """The proto form of one moderation answer."""
    message = pb.ModerationResponse(
        is_safe=result.is_safe,
        action=result.action,
        scores=result.scores,
        overall=result.overall,
        flagged_categories=result.flagged_categories,
        degraded=result.degraded,
        degraded_reason=result.degraded_reason or "",
        decision_id=result.decision_id or "",
    )
    if result.model is not None:
        message.model.CopyFrom(
            pb.ModelRef(
                name=result.model.name, version=result.model.version, device=result.model.device
            )
        )
    return message


def recommendation_message(result: Any) -> pb.RecommendationResponse:
    """The proto form of a ``FeedResult``."""
    return pb.RecommendationResponse(
        posts=[pb.ScoredPost(post_id=p.post_id, score=p.score) for p in result.posts],
        unknown_post_ids=result.unknown_post_ids,
        filtered_post_ids=result.filtered_post_ids,
        cold_start=result.cold_start,
        degraded=result.degraded,
        degraded_reason=result.degraded_reason or "",
    )


class GrpcRoutes(RouteGroup):
    """``AIService`` over Ray Serve's gRPC proxy; declarations of the HTTP paths it reuses."""

    # Provided by TextRoutes and RecommendationRoutes (bases of Ingress).
    async def _moderate(self, texts: list[str]) -> list[ModerationResult]:
        raise NotImplementedError

    def _audited(
        self, route: str, texts: list[str], results: list[ModerationResult], body: Any
    ) -> list[ModerationResult]:
        raise NotImplementedError

    async def rank_feed(self, body: FeedRequest) -> Any:
        raise NotImplementedError

    async def ModerateContent(  # noqa: N802 - the RPC name from the proto
        self, request: pb.ModerationRequest, grpc_context: RayServegRPCContext
    ) -> pb.ModerationResponse:
        """Moderate one text (the content of a post), like POST /api/v1/moderation/text."""
        if _auth_refusal(grpc_context):
            return pb.ModerationResponse()
        try:
            text = check_text(request.content, "content")
        except InvalidInputError as exc:
            _invalid(grpc_context, exc)
            return pb.ModerationResponse()
        results = await self._moderate([text])
        # Audited like the HTTP routes: every decision a caller sees is logged once.
        return moderation_message(self._audited("grpc", [text], results, None)[0])

    async def GetRecommendations(  # noqa: N802 - the RPC name from the proto
        self, request: pb.RecommendationRequest, grpc_context: RayServegRPCContext
    ) -> pb.RecommendationResponse:
        """Rank candidate posts for a user, like POST /api/v1/recommendations/feed."""
        if _auth_refusal(grpc_context):
            return pb.RecommendationResponse()
        fields: dict[str, Any] = {
            "user_id": request.user_id,
            "candidate_post_ids": list(request.candidate_post_ids),
        }
        if request.limit:  # proto3 has no "unset": 0 means the HTTP default
            fields["limit"] = request.limit
        try:
            result = await self.rank_feed(FeedRequest(**fields))
        except (InvalidInputError, ValidationError) as exc:
            _invalid(grpc_context, exc)
            return pb.RecommendationResponse()
        return recommendation_message(result)
