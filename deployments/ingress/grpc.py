"""gRPC (``AIService`` in ``protos/ai_service.proto``) over the same services as HTTP.

Ray Serve's gRPC proxy calls the ``Ingress`` methods of the RPC names, which hand the request
here: the API key comes from the ``x-api-key`` metadata (UNAUTHENTICATED when missing or
wrong, as HTTP answers 401), domain errors become gRPC status codes (as ``errors.py`` maps
them to HTTP status codes), answers become proto messages.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from typing import Any

import grpc
from pydantic import ValidationError
from ray.serve.grpc_util import RayServegRPCContext

from configs.settings import get_settings
from deployments.ingress.auth import API_KEY_HEADER, AuthError, KeyIdentity
from deployments.ingress.schemas.moderation import ModerationResult
from deployments.ingress.schemas.recommender import FeedRequest, FeedResult
from deployments.ingress.schemas.sentiment import (
    AspectSentimentRequest,
    AspectSentimentResult,
    AspectSentimentScores,
)
from deployments.ingress.services import recommender
from deployments.ingress.services.aspects import analyze_aspects, check_aspect_request
from deployments.ingress.services.text import moderate_audited
from deployments.ingress.services.validation import check_text
from deployments.ingress.state import IngressState
from deployments.metrics import record_api_request
from deployments.protos import ai_service_pb2 as pb
from models.exceptions import FeatureNotEnabledError, InvalidInputError, OverloadedError

logger = logging.getLogger("ray.serve")

API_KEY_METADATA = API_KEY_HEADER.lower()  # gRPC metadata keys are lower case


def _refuse(context: RayServegRPCContext, code: grpc.StatusCode, details: str) -> None:
    context.set_code(code)
    context.set_details(details)


def is_local_peer(peer: str) -> bool:
    """Whether a gRPC peer (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``, ``unix:...``) is
    this host."""
    kind, _, address = peer.partition(":")
    if kind == "unix":
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def authenticate(state: IngressState, context: RayServegRPCContext) -> KeyIdentity | None:
    """The caller's key identity, or None after setting the refusal on ``context``:
    UNAUTHENTICATED for a missing or wrong key (like HTTP's 401), PERMISSION_DENIED for a
    remote caller while ``SOCIALPLAY_GRPC_LOOPBACK_ONLY`` is set."""
    # Ray's gRPC proxy cannot bind loopback only (it listens on [::]); this keeps gRPC where
    # HTTP is when `make serve` binds HTTP to loopback.
    if get_settings().grpc_loopback_only and not is_local_peer(context.peer()):
        record_api_request(None, "remote_grpc_peer")
        _refuse(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            "gRPC is served to this host only (SOCIALPLAY_GRPC_LOOPBACK_ONLY=1, as HTTP binds "
            "loopback); call from this host or through a TLS-terminating proxy on it",
        )
        return None
    supplied: str | None = None
    for key, value in context.invocation_metadata():
        if key.lower() == API_KEY_METADATA:
            supplied = value
    try:
        identity = state.api_keys.check(supplied)
    except AuthError as error:
        record_api_request(None, error.code)
        details = (
            f"send your API key in the {API_KEY_METADATA} metadata"
            if error.code == "missing_api_key"
            else f"the API key in the {API_KEY_METADATA} metadata is not valid"
        )
        _refuse(context, grpc.StatusCode.UNAUTHENTICATED, details)
        return None
    record_api_request(identity.key_id, "accepted")
    return identity


def auth_refusal(state: IngressState, context: RayServegRPCContext) -> bool:
    """Set UNAUTHENTICATED on ``context`` unless the key is valid; True when refused."""
    return authenticate(state, context) is None


def refuse_input(context: RayServegRPCContext, exc: Exception) -> None:
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


def refuse_overload(context: RayServegRPCContext, exc: OverloadedError) -> None:
    """UNAVAILABLE (gRPC's retryable status) with a ``retry-after`` trailer in whole seconds:
    the gRPC form of HTTP's 503 with Retry-After."""
    _refuse(context, grpc.StatusCode.UNAVAILABLE, exc.message)
    context.set_trailing_metadata([("retry-after", str(max(1, math.ceil(exc.retry_after_s))))])


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


def recommendation_message(result: FeedResult) -> pb.RecommendationResponse:
    """The proto form of a ``FeedResult``."""
    return pb.RecommendationResponse(
        posts=[pb.ScoredPost(post_id=p.post_id, score=p.score) for p in result.posts],
        unknown_post_ids=result.unknown_post_ids,
        filtered_post_ids=result.filtered_post_ids,
        cold_start=result.cold_start,
        degraded=result.degraded,
        degraded_reason=result.degraded_reason or "",
    )


def _aspect_scores(scores: AspectSentimentScores) -> pb.AspectScores:
    return pb.AspectScores(
        positive=scores.positive, negative=scores.negative, neutral=scores.neutral
    )


def aspect_sentiment_message(result: AspectSentimentResult) -> pb.AspectSentimentResponse:
    """The proto form of an ``AspectSentimentResult`` (a term not found: empty label, no
    scores)."""
    message = pb.AspectSentimentResponse(
        mode=result.mode,
        degraded=result.degraded,
        degraded_reason=result.degraded_reason or "",
        model=pb.ModelRef(
            name=result.model.name, version=result.model.version, device=result.model.device
        ),
    )
    for item in result.aspects:
        term = message.aspects.add(aspect=item.aspect, found=item.found, label=item.label or "")
        if item.scores is not None:
            term.scores.CopyFrom(_aspect_scores(item.scores))
        term.spans.extend(pb.TextSpan(start=start, end=end) for start, end in item.spans)
    for category in result.categories:
        message.categories.add(
            category=category.category,
            label=category.label,
            scores=_aspect_scores(category.scores),
        )
    return message


async def analyze_aspect_sentiment(
    state: IngressState, request: pb.AspectSentimentRequest, context: RayServegRPCContext
) -> pb.AspectSentimentResponse:
    """Sentiment per aspect of one text, like POST /api/v1/sentiment/aspects; proto3 has no
    "unset" list, so empty ``aspects`` and ``categories`` ask the model to find the terms."""
    if auth_refusal(state, context):
        return pb.AspectSentimentResponse()
    try:
        body = AspectSentimentRequest(
            text=request.text,
            aspects=list(request.aspects) or None,
            categories=list(request.categories) or None,
        )
        result = await analyze_aspects(state, check_aspect_request(body, state.config.limits))
    except (InvalidInputError, ValidationError) as exc:
        refuse_input(context, exc)
        return pb.AspectSentimentResponse()
    except OverloadedError as exc:
        refuse_overload(context, exc)
        return pb.AspectSentimentResponse()
    return aspect_sentiment_message(result)


async def moderate_content(
    state: IngressState, request: pb.ModerationRequest, context: RayServegRPCContext
) -> pb.ModerationResponse:
    """Moderate one text (the content of a post), like POST /api/v1/moderation/text."""
    if auth_refusal(state, context):
        return pb.ModerationResponse()
    try:
        text = check_text(request.content, "content", state.config.limits)
    except InvalidInputError as exc:
        refuse_input(context, exc)
        return pb.ModerationResponse()
    try:
        # Audited like the HTTP routes: every decision a caller sees is logged once.
        results = await moderate_audited(state, "grpc", [text])
    except OverloadedError as exc:
        refuse_overload(context, exc)
        return pb.ModerationResponse()
    return moderation_message(results[0])


async def get_recommendations(
    state: IngressState, request: pb.RecommendationRequest, context: RayServegRPCContext
) -> pb.RecommendationResponse:
    """Rank candidate posts for a user, like POST /api/v1/recommendations/feed."""
    if auth_refusal(state, context):
        return pb.RecommendationResponse()
    fields: dict[str, Any] = {
        "user_id": request.user_id,
        "candidate_post_ids": list(request.candidate_post_ids),
    }
    if request.limit:  # proto3 has no "unset": 0 means the HTTP default
        fields["limit"] = request.limit
    try:
        body = FeedRequest(**fields)
        result = await recommender.rank_feed(
            state, body.user_id, body.candidate_post_ids, body.limit
        )
    except (InvalidInputError, ValidationError) as exc:
        refuse_input(context, exc)
        return pb.RecommendationResponse()
    except OverloadedError as exc:
        refuse_overload(context, exc)
        return pb.RecommendationResponse()
    return recommendation_message(result)
