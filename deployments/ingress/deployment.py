"""The ingress deployment: the only HTTP and gRPC surface of the graph.

It checks API keys and request limits, routes each request to one model node through its
DeploymentHandle (one hop, with a timeout), and answers from an embedded fallback when a node
fails. The HTTP app comes from ``build_fastapi_app`` (``app.py``), built in the replica after
``__init__``; the gRPC methods (``grpc.py``) call the same services.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle

from configs.ingress import IngressConfig
from configs.settings import get_settings
from deployments.ingress import grpc
from deployments.ingress.app import build_fastapi_app
from deployments.ingress.state import IngressState
from deployments.protos import ai_service_pb2 as pb


@serve.deployment(name="Ingress", max_ongoing_requests=256)
@serve.ingress()
class Ingress:
    """HTTP and gRPC front of the graph; ``nodes`` maps a node name to its handle."""

    def __init__(self, **nodes: DeploymentHandle[Any]) -> None:
        # Refuses to start without an API key (outside development mode).
        self.state = IngressState.create(nodes, get_settings())

    def __serve_build_asgi_app__(self) -> FastAPI:
        """The replica's FastAPI app, over this replica's state (called by Ray Serve)."""
        return build_fastapi_app(self.state)

    async def __del__(self) -> None:
        """Graceful stop (Serve calls this before the replica exits): write the queued audit
        decisions within ``audit.shutdown_flush_s``; what is left stays in the durable queue."""
        log = self.state.audit_log
        await log.shutdown(log.config.shutdown_flush_s)

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Apply limits, timeouts, policies and experiments without a restart."""
        self.state.apply(IngressConfig.model_validate(user_config or {}))

    async def ModerateContent(  # noqa: N802 - the RPC name from the proto
        self, request: pb.ModerationRequest, grpc_context: RayServegRPCContext
    ) -> pb.ModerationResponse:
        """gRPC: moderate one text, like POST /api/v1/moderation/text."""
        return await grpc.moderate_content(self.state, request, grpc_context)

    async def GetRecommendations(  # noqa: N802 - the RPC name from the proto
        self, request: pb.RecommendationRequest, grpc_context: RayServegRPCContext
    ) -> pb.RecommendationResponse:
        """gRPC: rank candidate posts for a user, like POST /api/v1/recommendations/feed."""
        return await grpc.get_recommendations(self.state, request, grpc_context)

    async def AnalyzeAspectSentiment(  # noqa: N802 - the RPC name from the proto
        self, request: pb.AspectSentimentRequest, grpc_context: RayServegRPCContext
    ) -> pb.AspectSentimentResponse:
        """gRPC: sentiment per aspect of one text, like POST /api/v1/sentiment/aspects."""
        return await grpc.analyze_aspect_sentiment(self.state, request, grpc_context)
