"""Killing a Serve replica and watching Serve replace it (shared by the fault and restart tests)."""

from __future__ import annotations

import time
from dataclasses import dataclass


def replica_actor_names(app_name: str, deployment: str) -> set[str]:
    """Names of the live replica actors of ``deployment`` in ``app_name`` (Serve names them
    ``SERVE_REPLICA::<app>#<deployment>#<id>`` in the ``serve`` namespace)."""
    import ray

    prefix = f"SERVE_REPLICA::{app_name}#{deployment}#"
    return {
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(prefix)
    }


def running(app_name: str, deployment: str) -> bool:
    """Whether Serve reports ``deployment`` healthy with its one replica running."""
    from ray import serve
    from ray.serve.schema import DeploymentStatus

    status = serve.status().applications[app_name].deployments[deployment]
    return status.status == DeploymentStatus.HEALTHY and status.replica_states == {"RUNNING": 1}


@dataclass
class Replacement:
    """When Serve created the replacement replica, and when it was running."""

    killed: str
    killed_at_s: float
    created_at_s: float | None = None
    running_at_s: float | None = None


def kill_and_wait_for_replacement(
    app_name: str, deployment: str, deadline_after_s: float
) -> Replacement:
    """``ray.kill`` the one replica of ``deployment``, then watch Serve replace it."""
    import ray

    (name,) = replica_actor_names(app_name, deployment)
    replacement = Replacement(name, time.monotonic())
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
    deadline = replacement.killed_at_s + deadline_after_s
    while time.monotonic() < deadline and replacement.running_at_s is None:
        now = time.monotonic()
        if replacement.created_at_s is None and replica_actor_names(app_name, deployment) - {name}:
            replacement.created_at_s = now
        if replacement.created_at_s is not None and running(app_name, deployment):
            replacement.running_at_s = now
        time.sleep(0.1)
    return replacement
