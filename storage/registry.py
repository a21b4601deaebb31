"""MLflow Model Registry, what serving and training both need: where it is, a client, which
version an alias names, and a registered version's files on local disk.

Tracking store: the caller's configured URI, else ``MLFLOW_TRACKING_URI``, else a local
``sqlite:///<state_dir>/mlflow.db`` with artifacts in ``<state_dir>/mlartifacts`` (MLflow 3.17
refuses a plain ``file:`` store unless MLFLOW_ALLOW_FILE_STORE=true; sqlite needs nothing).

Serving nodes resolve the alias they follow (`resolve_registered_version`) and load what it
names (`fetch_registered_head`); the training jobs (`pipelines.registry`) register versions
and move aliases, and download the serving version to compare a candidate with it.
Downloads land in ``<state_dir>/registry-cache/<name>/<version>`` once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import mlflow.artifacts
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from configs.nodes import RegisteredModelRef
from configs.settings import get_settings
from models.heads import HEAD_CONFIG_FILENAME

__all__ = [
    "download_head",
    "download_version",
    "fetch_registered_head",
    "registry_cache_dir",
    "registry_client",
    "resolve_registered_version",
    "resolve_tracking_uri",
    "state_dir",
]


def state_dir() -> Path:
    """The service's state directory, absolute (Ray workers may run elsewhere)."""
    return Path(get_settings().state_dir).resolve()


def registry_cache_dir() -> Path:
    """Where registered versions are downloaded to, one directory per name and version."""
    return state_dir() / "registry-cache"


def resolve_tracking_uri(configured: str | None = None) -> str:
    """Config value, else MLFLOW_TRACKING_URI, else the local sqlite store in the state dir."""
    if configured:
        return configured
    from_env = get_settings().mlflow_tracking_uri
    if from_env:
        return from_env
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'mlflow.db'}"


def registry_client(tracking_uri: str) -> MlflowClient:
    """A client of the tracking store and registry at `tracking_uri` (also set process-wide:
    ``download_artifacts("models:/...")`` reads the process-wide URIs)."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def download_version(name: str, version: str, dst_root: Path, marker: str, trained_by: str) -> Path:
    """Download a registered version's artifacts (once); the directory holding `marker`.

    `trained_by` names the job that registers such versions (for the error message).

    Raises:
        FileNotFoundError: The version's artifacts hold no `marker` file.
    """
    target = dst_root / name / str(version)
    found = sorted(target.rglob(marker)) if target.is_dir() else []
    if not found:
        partial = target.with_name(f"{target.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(partial)
        )
        shutil.rmtree(target, ignore_errors=True)
        partial.replace(target)  # rename: a concurrent reader never sees half a download
        found = sorted(target.rglob(marker))
    if not found:
        raise FileNotFoundError(
            f"registered model {name!r} version {version} holds no {marker}; "
            f"register it with {trained_by}"
        )
    return found[0].parent


def download_head(name: str, version: str) -> Path:
    """A registered text head's checkpoint directory, downloaded once into the cache."""
    return download_version(
        name, version, registry_cache_dir(), HEAD_CONFIG_FILENAME, "pipelines.text_heads"
    )


def _resolve_version(client: MlflowClient, tracking_uri: str, ref: RegisteredModelRef) -> str:
    try:
        if ref.alias is not None:
            return str(client.get_model_version_by_alias(ref.model_name, ref.alias).version)
        return str(client.get_model_version(ref.model_name, str(ref.version)).version)
    except MlflowException as exc:
        wanted = f"alias {ref.alias!r}" if ref.alias is not None else f"version {ref.version}"
        raise LookupError(
            f"registered model {ref.model_name!r} has no {wanted} in {tracking_uri} "
            f"({exc.error_code}); train and promote one with pipelines.text_heads, or fix "
            "model_name / alias / version / tracking_uri"
        ) from exc


def resolve_registered_version(ref: RegisteredModelRef) -> str:
    """The version `ref` names now (an alias resolved), without downloading anything.

    Raises:
        LookupError: The model, alias or version does not exist in the registry.
    """
    tracking_uri = resolve_tracking_uri(ref.tracking_uri)
    return _resolve_version(registry_client(tracking_uri), tracking_uri, ref)


def fetch_registered_head(ref: RegisteredModelRef) -> tuple[Path, str, str]:
    """Resolve `ref` (alias or version) and download it; returns (head dir, name, version).

    Raises:
        LookupError: The model, alias or version does not exist in the registry.
    """
    version = resolve_registered_version(ref)
    return download_head(ref.model_name, version), ref.model_name, version
