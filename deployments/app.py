"""The deployment graph, wired in one place.

``serve_config.yaml`` points at ``build_app`` with typed ``args``; ``app`` is the same graph on
the embedded defaults, for ``serve run deployments.app:app``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from ray.serve import Application
from ray.serve.deployment import Deployment

from configs.schemas import AppArgs
from deployments.ingress import Ingress
from deployments.moderation import TextModeration
from deployments.sentiment import Sentiment


def build_graph(
    args: AppArgs, deployment_options: Mapping[str, Mapping[str, Any]] | None = None
) -> Application:
    """``Ingress.bind(moderation=..., sentiment=...)``.

    ``deployment_options`` maps a deployment name to ``.options()`` overrides (tests and
    benchmarks; operators use ``serve_config.yaml``).
    """
    options = deployment_options or {}

    def node(deployment: object, name: str) -> Deployment:
        # The decorators return Deployment objects; mypy sees the undecorated classes.
        return cast(Deployment, deployment).options(**options.get(name, {}))

    moderation = node(TextModeration, "TextModeration").bind(args.moderation_model.model_dump())
    sentiment = node(Sentiment, "Sentiment").bind(args.sentiment_model.model_dump())
    return node(Ingress, "Ingress").bind(moderation=moderation, sentiment=sentiment)


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Application builder for ``serve_config.yaml``: validates ``args`` into ``AppArgs``."""
    return build_graph(AppArgs.model_validate(args or {}))


app = build_app()
