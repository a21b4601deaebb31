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
from configs.nodes import DetectorModelSpec, TextClassifierSpec
from deployments.ingress.deployment import Ingress
from deployments.ingress.experiments import node_key
from deployments.nodes.aspects import AspectSentimentNode
from deployments.nodes.detector import ObjectDetector
from deployments.nodes.embedder import Embedder
from deployments.nodes.nsfw import NsfwDetector
from deployments.nodes.recommender import Recommender
from deployments.nodes.replies import SmartReply
from deployments.nodes.tagger import ImageTagger
from deployments.nodes.text_classifier import text_classifier_deployment
from deployments.nodes.trends import Trends
from models.detector import DEFAULT_TAG_MAP
from models.tag_types import DEFAULT_TAGS
from models.text_classifier import SHIPPED_KIND, TextTask

# Serve notices a dead replica at its next health check and only then starts another; its
# default period (10 s) alone would keep a crashed node away longer than the 10 s within which
# full service must be back (tests/integration/test_replica_faults.py). The checks are cheap.
HEALTH_CHECK_PERIOD_S = 2.0
# A stopping replica looks this often whether its last request has finished (Serve's default,
# 2 s, holds every redeploy and delete for up to 2 s after the replica is idle).
GRACEFUL_SHUTDOWN_WAIT_LOOP_S = 0.2


def build_graph(
    args: AppArgs, deployment_options: Mapping[str, Mapping[str, Any]] | None = None
) -> Application:
    """``Ingress.bind(moderation=..., sentiment=..., [nsfw=..., tagger=..., detector=...,
    aspects=..., embedder=..., recommender=..., trends=..., replies=...,
    "moderation:<variant>"=..., ...])``.

    ``deployment_options`` maps a deployment name to ``.options()`` overrides (tests and
    benchmarks; operators use ``serve_config.yaml``).
    """
    options = deployment_options or {}

    def node(deployment: object, name: str) -> Deployment:
        # The decorators return Deployment objects; mypy sees the undecorated classes.
        overrides = {
            "health_check_period_s": HEALTH_CHECK_PERIOD_S,
            "graceful_shutdown_wait_loop_s": GRACEFUL_SHUTDOWN_WAIT_LOOP_S,
            **options.get(name, {}),
        }
        return cast(Deployment, deployment).options(**overrides)

    # Embed once: every node that runs MiniLM on text shares vectors through one store, and
    # (text_vectors.encoder: shared) one Embedder encodes for all of them.
    text_vectors = args.text_vectors
    embedder: Application | None = None
    if args.recommender.enabled or shares_text_encoder(args):
        embedder = node(Embedder, "Embedder").bind(args.recommender.embedding_model, text_vectors)
    shared_encoder = embedder if shares_text_encoder(args) else None

    def text_node(task: TextTask, variant: str | None, spec: TextClassifierSpec) -> Application:
        deployment = text_classifier_deployment(task, variant)
        return node(deployment, deployment.name).bind(task, spec, text_vectors, shared_encoder)

    # Text classifiers: one node class, deployed per task (TextModeration, Sentiment) and per
    # experiment variant (TextModeration-<variant>, ...), each with its own replicas and
    # user_config in serve_config.yaml; ingress experiments pick the variants.
    text_nodes: dict[str, Application] = {}
    variant_nodes: dict[str, Application] = {}
    for task, (spec, variants) in args.text_classifiers().items():
        text_task = cast(TextTask, task)
        text_nodes[task] = text_node(text_task, None, spec)
        for variant, variant_spec in variants.items():
            variant_nodes[node_key(task, variant)] = text_node(text_task, variant, variant_spec)
    # Image nodes are optional (``enabled``): a text-only graph stays small.
    image_nodes: dict[str, Application] = {}
    if args.nsfw_model.enabled:
        image_nodes["nsfw"] = node(NsfwDetector, "NsfwDetector").bind(args.nsfw_model)
    if args.tagger_model.enabled:
        image_nodes["tagger"] = node(ImageTagger, "ImageTagger").bind(args.tagger_model)
    if args.detector_model.enabled:
        image_nodes["detector"] = node(ObjectDetector, "ObjectDetector").bind(detector_spec(args))
    # Aspect sentiment is optional: the route and topic sentiment use it when it runs.
    aspect_nodes: dict[str, Application] = {}
    if args.aspect_model.enabled:
        aspect_nodes["aspects"] = node(AspectSentimentNode, "AspectSentiment").bind(
            args.aspect_model
        )
    # Recommender nodes are optional too. The Recommender owns the event store, feature store
    # and index; it calls the Embedder for new texts. The ingress gets the Embedder's handle
    # only to report it in /health: routes reach it through the Recommender, one hop.
    recommender_nodes: dict[str, Application] = {}
    if args.recommender.enabled and embedder is not None:
        recommender_nodes["embedder"] = embedder
        recommender_nodes["recommender"] = node(Recommender, "Recommender").bind(
            embedder, args.recommender.redis_key_prefix
        )
    # Trends read the Recommender's posts and label them through the Sentiment node (AppArgs
    # refuses trends without the recommender). SmartReply is independent of both.
    if args.trends.enabled:
        # With the aspect node, a post on the topic is labelled for the topic itself.
        recommender_nodes["trends"] = node(Trends, "Trends").bind(
            recommender_nodes["recommender"], text_nodes["sentiment"], aspect_nodes.get("aspects")
        )
    if args.replies.enabled:
        replies_encoder = shared_encoder if args.replies.path is None else None
        recommender_nodes["replies"] = node(SmartReply, "SmartReply").bind(
            args.replies, text_vectors, replies_encoder
        )
    return node(Ingress, "Ingress").bind(
        **text_nodes, **image_nodes, **aspect_nodes, **recommender_nodes, **variant_nodes
    )


# Text-classifier kinds whose model embeds with MiniLM (the heads).
MINILM_KINDS = frozenset({"head", SHIPPED_KIND})


def shares_text_encoder(args: AppArgs) -> bool:
    """Whether one Embedder encodes for the graph's text nodes: ``text_vectors.encoder`` is
    ``shared``, the Embedder runs the bundled MiniLM, and some node would otherwise load it
    (a head moderation / sentiment model or variant, or retrieval smart replies)."""
    if args.text_vectors.encoder != "shared" or args.recommender.embedding_model.path is not None:
        return False
    heads = any(
        spec.kind in MINILM_KINDS
        for main, variants in args.text_classifiers().values()
        for spec in (main, *variants.values())
    )
    replies = args.replies.enabled and args.replies.kind != "seq2seq" and args.replies.path is None
    return heads or replies


def detector_spec(args: AppArgs) -> DetectorModelSpec:
    """The detector's spec with its tag map set: labels map only to the tagger's candidate
    tags (a configured map is checked by AppArgs; the default one is cut to the candidates)."""
    spec = args.detector_model
    if spec.tag_map is not None:
        return spec
    candidates = set(args.tagger_model.tags or DEFAULT_TAGS)
    tag_map = {label: tag for label, tag in DEFAULT_TAG_MAP.items() if tag in candidates}
    return spec.model_copy(update={"tag_map": tag_map})


def build_app(args: dict[str, Any] | None = None) -> Application:
    """Application builder for ``serve_config.yaml``: validates ``args`` into ``AppArgs``."""
    return build_graph(AppArgs.model_validate(args or {}))


app = build_app()
