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

_lock = threading.Lock()
_metrics: dict[str, Any] = {}


def _get(name: str) -> Any:
    """The metric ``name`` of this process, created on first use."""
    metric = _metrics.get(name)
    if metric is not None:
        return metric
    with _lock:
        if name not in _metrics:
            _metrics[name] = _create(name)
        return _metrics[name]


def _create(name: str) -> Any:
    from ray.serve import metrics as serve_metrics

    # Ray annotates tag_keys as a 1-tuple; any length is accepted at run time.
    Counter: Any = serve_metrics.Counter
    Histogram: Any = serve_metrics.Histogram

    if name == "node_requests":
        return Counter(
            "socialplay_node_requests_total",
            description="Ingress-to-node calls by node, model version and outcome.",
            tag_keys=("node", "version", "outcome"),
        )
    if name == "node_latency":
        return Histogram(
            "socialplay_node_latency_s",
            description="Seconds one node call took, seen from the ingress.",
            boundaries=LATENCY_BOUNDARIES_S,
            tag_keys=("node", "version"),
        )
    if name == "batch_size":
        return Histogram(
            "socialplay_batch_size",
            description="Items per model batch, by node and model version.",
            boundaries=BATCH_SIZE_BOUNDARIES,
            tag_keys=("node", "version"),
        )
    if name == "degraded":
        return Counter(
            "socialplay_degraded_total",
            description="Answers given by a fallback instead of the node, by node and reason.",
            tag_keys=("node", "reason"),
        )
    if name == "cache":
        return Counter(
            "socialplay_cache_total",
            description="Result-cache lookups by node and outcome (hit, miss, error).",
            tag_keys=("node", "outcome"),
        )
    if name == "experiment_arm":
        return Counter(
            "socialplay_experiment_requests_total",
            description="Requests routed to each arm of an experiment (shadow included).",
            tag_keys=("experiment", "arm"),
        )
    if name == "audit_dropped":
        return Counter(
            "socialplay_audit_dropped_total",
            description="Moderation decisions dropped because the audit buffer was full.",
            tag_keys=(),
        )
    raise KeyError(f"unknown metric {name!r}")


def _safe(record: Any, *args: Any, **kwargs: Any) -> None:
    # A metrics failure must never fail a request.
    try:
        record(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - metrics are best effort by design
        logger.debug("metric not recorded: %s", type(exc).__name__)


def record_node_call(node: str, version: str, latency_s: float, ok: bool) -> None:
    """One ingress-to-node call: its outcome and latency."""
    tags = {"node": node, "version": version or "unknown"}
    _safe(_get("node_requests").inc, 1, tags={**tags, "outcome": "ok" if ok else "error"})
    _safe(_get("node_latency").observe, latency_s, tags=tags)


def record_batch(node: str, version: str, size: int) -> None:
    """The size of one batch a node ran."""
    _safe(_get("batch_size").observe, size, tags={"node": node, "version": version or "unknown"})


def record_degraded(node: str, reason: str) -> None:
    """One answer given by a fallback (``reason``: a short fixed phrase, no request data)."""
    _safe(_get("degraded").inc, 1, tags={"node": node, "reason": reason})


def record_cache(node: str, outcome: CacheOutcome) -> None:
    """One result-cache lookup."""
    _safe(_get("cache").inc, 1, tags={"node": node, "outcome": outcome})


def record_arm(experiment: str, arm: str) -> None:
    """One request routed to ``arm`` of ``experiment``."""
    _safe(_get("experiment_arm").inc, 1, tags={"experiment": experiment, "arm": arm})


def record_audit_dropped(count: int = 1) -> None:
    """Moderation decisions the audit log had to drop."""
    _safe(_get("audit_dropped").inc, count)
