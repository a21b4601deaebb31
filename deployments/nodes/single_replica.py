"""Nodes whose state lives in one replica refuse to start as several.

The Recommender holds the hnswlib vector index, the feature store's in-process mirror, the
moderation epoch of its feed cache and (without ``MONGODB_URL``) the document store in its
process; Trends holds its label cache and runs one background loop. A second replica would
answer from a second, diverging copy: feeds that ignore a hide sent to the other replica,
similar posts that miss half the corpus. Redis and MongoDB being shared does not make this
state shared (the index and the mirror never are), so these nodes refuse any replica count
above one, at start-up, naming the setting (see docs/operations.md).
"""

from __future__ import annotations

from typing import Any

from ray import serve

__all__ = ["replica_settings", "require_one_replica"]


def replica_settings() -> tuple[int | None, int | None]:
    """``(num_replicas, autoscaling max_replicas)`` of the running replica's deployment.

    None where it is not set or not readable (outside a replica).
    """
    try:
        config: Any = serve.get_replica_context()._deployment_config
    except Exception:  # noqa: BLE001 - outside a replica there is no deployment config
        return None, None
    autoscaling = getattr(config, "autoscaling_config", None)
    max_replicas = getattr(autoscaling, "max_replicas", None) if autoscaling else None
    return getattr(config, "num_replicas", None), max_replicas


def require_one_replica(deployment: str, state: str) -> None:
    """Raise when the deployment may run more than one replica.

    Raises:
        ValueError: ``num_replicas`` or ``autoscaling_config.max_replicas`` is above 1; the
            message names the setting, the deployment and the state that would be split.
    """
    num_replicas, max_replicas = replica_settings()
    if max_replicas is not None and max_replicas > 1:
        setting = f"autoscaling_config.max_replicas={max_replicas}"
    elif max_replicas is None and num_replicas is not None and num_replicas > 1:
        setting = f"num_replicas={num_replicas}"
    else:
        return
    raise ValueError(
        f"deployment {deployment} has {setting}, but its state ({state}) lives in one replica "
        "and would be split between replicas; set num_replicas: 1 (and no autoscaling_config) "
        f"for {deployment} in serve_config.yaml"
    )
