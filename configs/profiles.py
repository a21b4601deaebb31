"""Serve profiles: overlays that `python -m deployments.launch --profile <name>` applies to
``serve_config.yaml`` before serving it.

A profile (``serve_config.<name>.yaml`` beside the serve config) changes only what differs on
other hardware: per deployment its GPU share (``ray_actor_options.num_gpus``), its in-flight
bound and its ``user_config`` (batch sizes). Everything else stays in ``serve_config.yaml``,
the one place for replicas, resources and batch settings, so the two cannot drift apart.
A profile naming a deployment the serve config does not deploy is refused.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import Field

from configs.base import StrictModel, load_yaml_file

__all__ = [
    "ActorOverlay",
    "DeploymentOverlay",
    "ServeProfile",
    "apply_profile",
    "gpu_shares",
    "load_profile",
    "profile_path",
]


class ActorOverlay(StrictModel):
    """The Ray actor options a profile sets for one deployment's replicas."""

    num_gpus: float = Field(ge=0.0, le=1.0)
    """GPU share of each replica: 0.25 lets four replicas share one GPU. Ray sets the
    replica's CUDA_VISIBLE_DEVICES to its GPU, so a model with device "auto" runs there."""
    num_cpus: float | None = Field(default=None, gt=0.0)
    """CPU reservation of each replica; None keeps serve_config.yaml's."""


class DeploymentOverlay(StrictModel):
    """What a profile changes in one deployment of serve_config.yaml."""

    ray_actor_options: ActorOverlay
    """GPU (and optionally CPU) share of each replica."""
    max_ongoing_requests: int | None = Field(default=None, ge=1)
    """Requests in a replica at once; keep it >= the batch size, or batches never fill. None
    keeps serve_config.yaml's."""
    user_config: dict[str, Any] = Field(default_factory=dict)
    """Merged key by key into the deployment's user_config (e.g. `batching`); validated by
    the node as any user_config is."""


class ServeProfile(StrictModel):
    """An overlay of serve_config.yaml for other hardware (``serve_config.<name>.yaml``)."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9-]+$")
    """The profile's name: `--profile <name>` reads `serve_config.<name>.yaml`."""
    description: str = Field(min_length=1)
    """What hardware the profile is for."""
    gpus: float = Field(ge=0.0)
    """GPUs the profile needs for one replica of every deployment (the sum of the shares);
    a Ray cluster with fewer leaves replicas pending."""
    deployments: dict[str, DeploymentOverlay]
    """Per deployment name of serve_config.yaml: what the profile changes."""


def profile_path(config_path: Path, name_or_path: str) -> Path:
    """A profile given by name (``gpu`` -> ``serve_config.gpu.yaml`` beside the serve config)
    or by path."""
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        return Path(name_or_path)
    return config_path.with_name(f"{config_path.stem}.{name_or_path}{config_path.suffix}")


def load_profile(path: str | Path) -> ServeProfile:
    """Read and validate a profile file; errors name the file and the bad field."""
    return load_yaml_file(path, ServeProfile, "serve profile", "serve_config.gpu.yaml")


def gpu_shares(config: dict[str, Any]) -> dict[str, float]:
    """GPUs each deployment of a serve config's applications asks for (replicas x share)."""
    shares: dict[str, float] = {}
    for application in config.get("applications") or []:
        for deployment in application.get("deployments") or []:
            options = deployment.get("ray_actor_options") or {}
            replicas = deployment.get("num_replicas", 1)
            shares[deployment["name"]] = float(options.get("num_gpus", 0)) * int(replicas)
    return shares


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_profile(config: dict[str, Any], profile: ServeProfile) -> dict[str, Any]:
    """`config` (a parsed serve_config.yaml) with `profile` applied; `config` is unchanged.

    Raises:
        ValueError: The profile names a deployment that no application of `config` deploys.
    """
    result = copy.deepcopy(config)
    deployments = {
        deployment["name"]: deployment
        for application in result.get("applications") or []
        for deployment in application.get("deployments") or []
    }
    unknown = sorted(set(profile.deployments) - set(deployments))
    if unknown:
        raise ValueError(
            f"profile {profile.name!r} names {unknown}, which the serve config does not "
            f"deploy; use names from {sorted(deployments)}"
        )
    for name, overlay in profile.deployments.items():
        deployment = deployments[name]
        options = overlay.ray_actor_options.model_dump(exclude_none=True)
        deployment["ray_actor_options"] = {**(deployment.get("ray_actor_options") or {}), **options}
        if overlay.max_ongoing_requests is not None:
            deployment["max_ongoing_requests"] = overlay.max_ongoing_requests
        if overlay.user_config:
            deployment["user_config"] = _merge(
                deployment.get("user_config") or {}, overlay.user_config
            )
    return result
