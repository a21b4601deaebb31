"""The ingress deployment: the only HTTP surface of the graph.

It checks API keys and request limits (``http_app``), routes each request to one model node
through its DeploymentHandle (one hop, with a timeout), and answers from an embedded fallback
when a node fails. Its routes come from one mixin per feature area (``routes_*.py``).
"""

from typing import Any

from ray import cloudpickle, serve
from ray.serve.handle import DeploymentHandle

from configs.ingress import IngressConfig
from configs.settings import get_settings, resolve_api_keys
from deployments.ingress import experiments
from deployments.ingress import grpc as routes_grpc
from deployments.ingress import state as ingress_state
from deployments.ingress.grpc import GrpcRoutes
from deployments.ingress.http import app
from deployments.ingress.routes import events as routes_events
from deployments.ingress.routes import experiments as routes_experiments
from deployments.ingress.routes import health as routes_service
from deployments.ingress.routes import images as routes_images
from deployments.ingress.routes import recommendations as routes_recommendations
from deployments.ingress.routes import replies as routes_replies
from deployments.ingress.routes import review as routes_review
from deployments.ingress.routes import text as routes_text
from deployments.ingress.routes import trends as routes_trends
from deployments.ingress.routes.events import EventRoutes
from deployments.ingress.routes.experiments import ExperimentRoutes
from deployments.ingress.routes.health import ServiceRoutes
from deployments.ingress.routes.images import ImageRoutes
from deployments.ingress.routes.recommendations import RecommendationRoutes
from deployments.ingress.routes.replies import ReplyRoutes
from deployments.ingress.routes.review import ReviewRoutes
from deployments.ingress.routes.text import TextRoutes
from deployments.ingress.routes.trends import TrendRoutes

# Ray patches each route method's signature (``self`` becomes a dependency) in the process that
# deploys, and FastAPI reads that signature again inside the replica. Functions pickled by
# reference would arrive unpatched (``self`` turns into a required query parameter), so the
# route modules travel by value, as methods written in this class body would.
for _route_module in (
    routes_service,
    routes_text,
    routes_images,
    routes_events,
    routes_recommendations,
    routes_trends,
    routes_replies,
    routes_review,
    routes_experiments,
    routes_grpc,
):
    cloudpickle.register_pickle_by_value(_route_module)  # type: ignore[no-untyped-call]


@serve.deployment(name="Ingress", max_ongoing_requests=256)
@serve.ingress(app)
class Ingress(
    ServiceRoutes,
    TextRoutes,
    ImageRoutes,
    EventRoutes,
    RecommendationRoutes,
    TrendRoutes,
    # After TextRoutes: ReplyRoutes uses TextRoutes._moderate (its own is only a declaration).
    ReplyRoutes,
    ReviewRoutes,
    ExperimentRoutes,
    # gRPC (AIService): after TextRoutes and RecommendationRoutes, whose paths it reuses.
    GrpcRoutes,
):
    """HTTP front of the graph; ``nodes`` maps a node name to its handle."""

    def __init__(self, **nodes: DeploymentHandle[Any]) -> None:
        settings = get_settings()
        keys = resolve_api_keys(settings)  # refuses to start without a key
        ingress_state.STATE.api_keys = [key.encode("utf-8") for key in keys]
        ingress_state.STATE.key_mode = "configured" if settings.configured_keys() else "development"
        self.nodes = dict(nodes)

    def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Apply limits, timeouts and moderation thresholds without a restart."""
        config = IngressConfig.model_validate(user_config or {})
        # An experiment naming a variant this graph does not run would fail its requests:
        # refuse the config instead (the update fails, the old config stays).
        missing = experiments.missing_variant_nodes(config.experiments, list(self.nodes))
        if missing:
            raise ValueError(
                f"experiments route to nodes {missing} that this graph does not run; add the "
                "variants to args.moderation_variants / sentiment_variants or fix the arms"
            )
        ingress_state.STATE.config = config
        # Coalescers hold the old batch settings and timeouts: let them drain, build anew.
        old_coalescers, ingress_state.STATE.coalescers = ingress_state.STATE.coalescers, {}
        for coalescer in old_coalescers.values():
            coalescer.close()
        experiments.REGISTRY.configure(config.experiments)
