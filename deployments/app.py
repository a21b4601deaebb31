"""The deployment graph, wired in one place.

``serve_config.yaml`` points at ``build_app`` with typed ``args``; ``app`` is the same graph on
the embedded defaults, for ``serve run deployments.app:app``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from ray.serve import Application
from ray.serve.deployment import Deployment

from configs.app import AppArgs
from deployments.ingress.deployment import Ingress
from deployments.ingress.experiments import node_key
from deployments.nodes.embedder import Embedder
from deployments.nodes.moderation import TextModeration
from deployments.nodes.nsfw import NsfwDetector
from deployments.nodes.recommender import Recommender
from deployments.nodes.replies import SmartReply
from deployments.nodes.sentiment import Sentiment
from deployments.nodes.tagger import ImageTaggerNode
from deployments.nodes.trends import Trends


def build_graph(
    args: AppArgs, deployment_options: Mapping[str, Mapping[str, Any]] | None = None
) -> Application:
    """``Ingress.bind(moderation=..., sentiment=..., [nsfw=..., tagger=..., embedder=...,
    recommender=..., trends=..., replies=..., "moderation:<variant>"=..., ...])``.

    ``deployment_options`` maps a deployment name to ``.options()`` overrides (tests and
    benchmarks; operators use ``serve_config.yaml``).
    """
    options = deployment_options or {}

    def node(deployment: object, name: str) -> Deployment:
        # The decorators return Deployment objects; mypy sees the undecorated classes.
        return cast(Deployment, deployment).options(**options.get(name, {}))

    # Embed once: every node that runs MiniLM on text shares vectors through one store.
    text_vectors = args.text_vectors.model_dump()
    moderation = node(TextModeration, "TextModeration").bind(
        args.moderation_model.model_dump(), text_vectors
    )
    sentiment = node(Sentiment, "Sentiment").bind(args.sentiment_model.model_dump(), text_vectors)
    # Image nodes are optional (``enabled``): a text-only graph stays small.
    image_nodes: dict[str, Application] = {}
    if args.nsfw_model.enabled:
        image_nodes["nsfw"] = node(NsfwDetector, "NsfwDetector").bind(args.nsfw_model.model_dump())
    if args.tagger_model.enabled:
        image_nodes["tagger"] = node(ImageTaggerNode, "ImageTagger").bind(
            args.tagger_model.model_dump()
        )
    # Recommender nodes are optional too. The Recommender owns the event store, feature store
    # and index; it calls the Embedder for new texts. The ingress gets the Embedder's handle
    # only to report it in /health: routes reach it through the Recommender, one hop.
    recommender_nodes: dict[str, Application] = {}
    if args.recommender.enabled:
        embedder = node(Embedder, "Embedder").bind(
            args.recommender.embedding_model.model_dump(), text_vectors
        )
        recommender_nodes["embedder"] = embedder
        recommender_nodes["recommender"] = node(Recommender, "Recommender").bind(
            embedder, args.recommender.redis_key_prefix
        )
    # Trends read the Recommender's posts and label them through the Sentiment node (AppArgs
    # refuses trends without the recommender). SmartReply is independent of both.
    if args.trends.enabled:
        recommender_nodes["trends"] = node(Trends, "Trends").bind(
            recommender_nodes["recommender"], sentiment
        )
    if args.replies.enabled:
        recommender_nodes["replies"] = node(SmartReply, "SmartReply").bind(
            args.replies.model_dump(), text_vectors
        )
    # Variants: the same node classes under their own deployment names, so serve_config.yaml
    # gives each its own replicas, resources and user_config; ingress experiments pick them.
    variant_nodes: dict[str, Application] = {}
    for variant, moderation_spec in args.moderation_variants.items():
        deployment_name = f"TextModeration-{variant}"
        variant_nodes[node_key("moderation", variant)] = (
            node(TextModeration, deployment_name)
            .options(name=deployment_name)
            .bind(moderation_spec.model_dump(), text_vectors)
        )
    for variant, sentiment_spec in args.sentiment_variants.items():
        deployment_name = f"Sentiment-{variant}"
        variant_nodes[node_key("sentiment", variant)] = (
            node(Sentiment, deployment_name)
            .options(name=deployment_name)
            .bind(sentiment_spec.model_dump(), text_vectors)
        )
    return node(Ingress, "Ingress").bind(
        moderation=moderation,
        sentiment=sentiment,
        **image_nodes,
        **recommender_nodes,
        **variant_nodes,
    )


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Application builder for ``serve_config.yaml``: validates ``args`` into ``AppArgs``."""
    return build_graph(AppArgs.model_validate(args or {}))


app = build_app()
