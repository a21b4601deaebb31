"""Our own Prometheus metrics, exported through Ray's metrics agent (``ray.serve.metrics``).

Ray serves them on its metrics export port (8080 by default; ``ray start --metrics-export-port``)
with the prefix ``ray_``, e.g. ``ray_socialplay_node_requests_total``. Ray adds the
deployment, replica and application tags itself.

Labels hold node names, model versions, outcomes, experiment and arm names only: never a user
id, a text or anything else from a request.

The metric objects are created on first use in each process: this module is imported in the
driver that deploys the graph as well, where no metrics are recorded.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Literal

logger = logging.getLogger("ray.serve")

# Seconds: from a cached answer (~1 ms) to a transformer batch near its timeout.
LATENCY_BOUNDARIES_S = [
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
]
BATCH_SIZE_BOUNDARIES = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]

CacheOutcome = Literal["hit", "miss", "error"]


@dataclass(frozen=True)
class _Metric:
    """One of our metrics: a Counter, or a Histogram when it has bucket `boundaries`."""

    name: str
    description: str
    tag_keys: tuple[str, ...]
    boundaries: list[float] | None = None


_NODE_TAGS = ("node", "version")
_NODE_REQUESTS = _Metric(
    "socialplay_node_requests_total",
    "Ingress-to-node calls by node, model version and outcome.",
    (*_NODE_TAGS, "outcome"),
)
_NODE_LATENCY = _Metric(
    "socialplay_node_latency_s",
    "Seconds one node call took, seen from the ingress.",
    _NODE_TAGS,
    LATENCY_BOUNDARIES_S,
)
_BATCH_SIZE = _Metric(
    "socialplay_batch_size",
    "Items per model batch, by node and model version.",
    _NODE_TAGS,
    BATCH_SIZE_BOUNDARIES,
)
_DEGRADED = _Metric(
    "socialplay_degraded_total",
    "Answers given by a fallback instead of the node, by node and reason.",
    ("node", "reason"),
)
_CACHE = _Metric(
    "socialplay_cache_total",
    "Result-cache lookups by node and outcome (hit, miss, error).",
    ("node", "outcome"),
)
_EXPERIMENT_ARM = _Metric(
    "socialplay_experiment_requests_total",
    "Requests routed to each arm of an experiment (shadow included).",
    ("experiment", "arm"),
)
_AUDIT_DROPPED = _Metric(
    "socialplay_audit_dropped_total",
    "Moderation decisions dropped because the audit buffer was full.",
    (),
)
_API_REQUESTS = _Metric(
    "socialplay_api_requests_total",
    "Requests by API key id (sha256 prefix, never the key; none: no valid key) and outcome "
    "(accepted, missing_api_key, invalid_api_key, missing_scope, remote_grpc_peer).",
    ("key_id", "outcome"),
)

_lock = threading.Lock()
_created: dict[str, Any] = {}


def _get(metric: _Metric) -> Any:
    """The Ray object of `metric` in this process, created on first use."""
    created = _created.get(metric.name)
    if created is not None:
        return created
    with _lock:
        if metric.name not in _created:
            _created[metric.name] = _create(metric)
        return _created[metric.name]


def _create(metric: _Metric) -> Any:
    from ray.serve import metrics as serve_metrics

    # Ray annotates tag_keys as a 1-tuple; any length is accepted at run time.
    tag_keys: Any = metric.tag_keys
    if metric.boundaries is None:
        return serve_metrics.Counter(metric.name, description=metric.description, tag_keys=tag_keys)
    return serve_metrics.Histogram(
        metric.name,
        description=metric.description,
        boundaries=metric.boundaries,
        tag_keys=tag_keys,
    )


def _safe(record: Any, *args: Any, **kwargs: Any) -> None:
    # A metrics failure must never fail a request.
    try:
        record(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - metrics are best effort by design
        logger.debug("metric not recorded: %s", type(exc).__name__)


def _node_tags(node: str, version: str) -> dict[str, str]:
    """The tags of a node metric (`_NODE_TAGS`); an empty version is reported as "unknown"."""
    return {"node": node, "version": version or "unknown"}


def record_node_call(node: str, version: str, latency_s: float, ok: bool) -> None:
    """One ingress-to-node call: its outcome and latency."""
    tags = _node_tags(node, version)
    _safe(_get(_NODE_REQUESTS).inc, 1, tags={**tags, "outcome": "ok" if ok else "error"})
    _safe(_get(_NODE_LATENCY).observe, latency_s, tags=tags)


def record_batch(node: str, version: str, size: int) -> None:
    """The size of one batch a node ran."""
    _safe(_get(_BATCH_SIZE).observe, size, tags=_node_tags(node, version))


def record_degraded(node: str, reason: str) -> None:
    """One answer given by a fallback (``reason``: a short fixed phrase, no request data)."""
    _safe(_get(_DEGRADED).inc, 1, tags={"node": node, "reason": reason})


def record_cache(node: str, outcome: CacheOutcome) -> None:
    """One result-cache lookup."""
    _safe(_get(_CACHE).inc, 1, tags={"node": node, "outcome": outcome})


def record_arm(experiment: str, arm: str) -> None:
    """One request routed to ``arm`` of ``experiment``."""
    _safe(_get(_EXPERIMENT_ARM).inc, 1, tags={"experiment": experiment, "arm": arm})


def record_audit_dropped(count: int = 1) -> None:
    """Moderation decisions the audit log had to drop."""
    _safe(_get(_AUDIT_DROPPED).inc, count)


def record_api_request(key_id: str | None, outcome: str) -> None:
    """One request's key check: the key's id (None without a valid key) and its outcome."""
    _safe(_get(_API_REQUESTS).inc, 1, tags={"key_id": key_id or "none", "outcome": outcome})
