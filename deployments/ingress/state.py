"""Everything one ingress replica keeps, in one object that ``Ingress.reconfigure`` updates.

``Ingress.__init__`` builds an ``IngressState`` from its node handles and the settings;
``build_fastapi_app(state)`` and the gRPC methods read it; nothing about a replica lives in a
module global.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from configs.ingress import IngressConfig
from configs.settings import Settings, resolve_hash_secret
from deployments.coalesce import CallCoalescer
from deployments.ingress.auth import ApiKeys
from deployments.ingress.circuit import BreakerRegistry, FallbackGate
from deployments.ingress.experiments import ExperimentRegistry, missing_variant_nodes
from deployments.ingress.image_fetch import ImageFetcher
from deployments.metrics import record_audit_dropped
from models.exceptions import FeatureNotEnabledError
from models.recommender import FallbackSnapshot
from storage.audit_log import AuditLog, StoreInfo, open_queue, open_repository

if TYPE_CHECKING:
    from models.aspect_types import WindowVaderAspects
    from models.nsfw import NudeNetDetector
    from models.tagger import ImageTagModel
    from models.text_classifier import TextClassifierModel

ModelT = TypeVar("ModelT", covariant=True)


class NodeHandle(Protocol):
    """What the ingress uses of a ``DeploymentHandle``: its name and its methods by name."""

    @property
    def deployment_name(self) -> str: ...

    def __getattr__(self, method: str) -> Any: ...


class LazyModel(Generic[ModelT]):
    """A model loaded in a worker thread on first use, once, however many requests ask."""

    def __init__(self, load: Callable[[], ModelT]) -> None:
        self._load = load
        self._model: ModelT | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> ModelT:
        """The model, loading it first when no request has needed it yet."""
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(self._load)
            return self._model


# The embedded models import torch, onnxruntime or nudenet: loaded only when a node fails.
def _load_text_default(task: str) -> TextClassifierModel[Any]:
    from models.text_classifier import load_embedded_default

    return load_embedded_default(task)


def _load_nudenet() -> NudeNetDetector:
    from models.nsfw import NudeNetDetector

    return NudeNetDetector.load(num_threads=1)


def _load_window_vader() -> WindowVaderAspects:
    from models.aspect_types import WindowVaderAspects

    return WindowVaderAspects.load()


def _load_faces_tagger() -> ImageTagModel:
    from models.tagger import ImageTagModel

    return ImageTagModel.load(None)


@dataclass
class Fallbacks:
    """The embedded models that answer in the ingress when a node cannot."""

    # By text task: the task's embedded classifier (alt-profanity-check, VADER).
    text_models: dict[str, LazyModel[TextClassifierModel[Any]]] = field(default_factory=dict)
    nsfw: LazyModel[NudeNetDetector] = field(default_factory=lambda: LazyModel(_load_nudenet))
    # Without its CLIP checkpoint the tagger still finds faces: faces-only tags.
    tagger: LazyModel[ImageTagModel] = field(default_factory=lambda: LazyModel(_load_faces_tagger))
    # Aspect sentiment: VADER over a window of words around each term.
    aspects: LazyModel[WindowVaderAspects] = field(
        default_factory=lambda: LazyModel(_load_window_vader)
    )

    def text(self, task: str) -> LazyModel[TextClassifierModel[Any]]:
        """The embedded classifier of text ``task``, loaded on first use."""
        model = self.text_models.get(task)
        if model is None:
            model = self.text_models[task] = LazyModel(partial(_load_text_default, task))
        return model


class HiddenPosts:
    """Posts each user hid or reported, as this replica saw them: the feed fallback leaves
    them out when the Recommender (which owns the full sets) cannot answer.

    Learnt from the hide/report events this replica forwarded and from the posts the
    Recommender filtered out of the healthy feeds it served (hidden, reported or flagged).
    Bounded: the least recently seen users beyond ``max_users`` are forgotten, and each user
    keeps the newest ``max_posts_per_user`` posts. Held in memory only, never logged.
    """

    def __init__(self, max_users: int = 50_000, max_posts_per_user: int = 1_000) -> None:
        self.max_users = max_users
        self.max_posts_per_user = max_posts_per_user
        self._users: OrderedDict[str, dict[str, None]] = OrderedDict()

    def add(self, user_id: str, post_ids: Iterable[str]) -> None:
        """Remember ``post_ids`` as hidden for ``user_id``."""
        posts = self._users.pop(user_id, None) or {}
        for post_id in post_ids:
            posts.pop(post_id, None)
            posts[post_id] = None
        while len(posts) > self.max_posts_per_user:
            posts.pop(next(iter(posts)))
        if posts:
            self._users[user_id] = posts
        while len(self._users) > self.max_users:
            self._users.popitem(last=False)

    def of(self, user_id: str) -> set[str]:
        """The posts ``user_id`` is known to have hidden or reported."""
        return set(self._users.get(user_id, ()))

    def __len__(self) -> int:
        return len(self._users)


@dataclass
class FeedSnapshot:
    """Post freshness and popularity the feed fallback ranks with, and users' hidden posts.

    Refreshed in the background after successful feeds, so a failing Recommender finds one
    already here; ``latest`` is None until the first refresh.
    """

    latest: FallbackSnapshot | None = None
    taken_at_s: float = 0.0
    refresh: asyncio.Task[None] | None = None
    hidden: HiddenPosts = field(default_factory=HiddenPosts)

    def age_s(self) -> float:
        """Seconds since the snapshot was taken (monotonic clock)."""
        return time.monotonic() - self.taken_at_s


@dataclass
class HealthSnapshot:
    """The last health check's verdict, which public ``/health`` answers from.

    Refreshed in the background at most every ``HEALTH_SNAPSHOT_MAX_AGE_S``, however many
    callers ask: public liveness never fans out to the nodes per request.
    """

    status: str | None = None  # "ok" or "degraded"; None until the first check finished
    taken_at_s: float = float("-inf")
    refresh: asyncio.Task[None] | None = None

    def age_s(self) -> float:
        """Seconds since the last check finished (monotonic clock)."""
        return time.monotonic() - self.taken_at_s


def audit_log_for(settings: Settings, config: IngressConfig) -> AuditLog:
    """The replica's audit log: MongoDB when ``MONGODB_URL`` is set, else in-process.

    The store is chosen once, here; the repository is opened on the first write. Decisions
    wait in a durable queue (a Redis stream with ``REDIS_URL``, else a file in the state dir).
    """
    mongodb_url = settings.mongodb_url
    kind = "mongodb" if mongodb_url else "embedded (mongomock, in-process, not persisted)"
    return AuditLog(
        config.audit,
        lambda: open_repository(mongodb_url)[0],
        StoreInfo(kind, bool(mongodb_url)),
        on_dropped=record_audit_dropped,
        queue=open_queue(
            config.audit.buffer_size, Path(settings.state_dir).resolve(), settings.redis_url
        ),
    )


@dataclass
class IngressState:
    """One replica's state: live config, keys, handles and every per-replica helper."""

    nodes: Mapping[str, NodeHandle]
    api_keys: ApiKeys
    audit_log: AuditLog
    config: IngressConfig = field(default_factory=IngressConfig)
    # One circuit breaker per node (deployment name), created on first call.
    breakers: BreakerRegistry = field(default_factory=BreakerRegistry)
    # One call coalescer per (node, timeout), created on first call; rebuilt on reconfigure.
    coalescers: dict[str, CallCoalescer] = field(default_factory=dict)
    experiments: ExperimentRegistry = field(default_factory=ExperimentRegistry)
    fallbacks: Fallbacks = field(default_factory=Fallbacks)
    image_fetcher: ImageFetcher = field(default_factory=ImageFetcher)
    feed_snapshot: FeedSnapshot = field(default_factory=FeedSnapshot)
    health: HealthSnapshot = field(default_factory=HealthSnapshot)
    # Fallback model runs in flight (bounded by limits.max_concurrent_fallbacks).
    fallback_gate: FallbackGate = field(default_factory=FallbackGate)

    @classmethod
    def create(cls, nodes: Mapping[str, NodeHandle], settings: Settings) -> IngressState:
        """A replica's state on the default config (``reconfigure`` applies the real one).

        Refuses to start without an API key or without SOCIALPLAY_HASH_SECRET (outside
        development mode): audited user ids are hashed with it.
        """
        resolve_hash_secret(settings)
        config = IngressConfig()
        return cls(
            nodes=dict(nodes),
            api_keys=ApiKeys.from_settings(settings),
            audit_log=audit_log_for(settings, config),
            config=config,
        )

    def node(self, name: str, feature: str) -> NodeHandle:
        """The handle of node ``name``, or FeatureNotEnabledError when the graph lacks it."""
        handle = self.nodes.get(name)
        if handle is None:
            raise FeatureNotEnabledError(
                feature,
                f"{feature} needs the {name} node, which this deployment does not run; "
                "enable it in serve_config.yaml",
            )
        return handle

    def audit(self) -> AuditLog | None:
        """The audit log, or None while ``audit.enabled`` is off."""
        return self.audit_log if self.config.audit.enabled else None

    def apply(self, config: IngressConfig) -> None:
        """Adopt a new ``user_config``; ValueError (old config kept) when it cannot work.

        An experiment naming a variant this graph does not run would fail its requests, so
        such a config is refused.
        """
        missing = missing_variant_nodes(config.experiments, list(self.nodes))
        if missing:
            raise ValueError(
                f"experiments route to nodes {missing} that this graph does not run; add the "
                "variants to args.moderation_variants / sentiment_variants or fix the arms"
            )
        self.config = config
        # Coalescers hold the old batch settings and timeouts: let them drain, build anew.
        old_coalescers, self.coalescers = self.coalescers, {}
        for coalescer in old_coalescers.values():
            coalescer.close()
        self.experiments.configure(config.experiments)
        # Buffer and batch sizes, intervals and store_text apply to later decisions.
        self.audit_log.config = config.audit
