"""What every route group of the ingress may use: its node handles and live config."""

from typing import Any

from ray.serve.handle import DeploymentHandle

from configs.ingress import IngressConfig
from deployments.ingress import state as ingress_state
from models.exceptions import FeatureNotEnabledError


class RouteGroup:
    """Base of the ingress's route mixins; ``Ingress.__init__`` fills ``nodes``."""

    nodes: dict[str, DeploymentHandle[Any]]

    @property
    def config(self) -> IngressConfig:
        """The ingress's live ``user_config``."""
        return ingress_state.STATE.config

    def node(self, name: str, feature: str) -> DeploymentHandle[Any]:
        """The handle of node ``name``, or a clear 422 when this graph does not run it."""
        handle = self.nodes.get(name)
        if handle is None:
            raise FeatureNotEnabledError(
                feature,
                f"{feature} needs the {name} node, which this deployment does not run; "
                "enable it in serve_config.yaml",
            )
        return handle
