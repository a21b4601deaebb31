"""MLflow Model Registry, what serving and training both need: where it is, a client, which
version an alias names, and a registered version's files on local disk.

Tracking store: the caller's configured URI, else ``MLFLOW_TRACKING_URI``, else a local
``sqlite:///<state_dir>/mlflow.db`` with artifacts in ``<state_dir>/mlartifacts`` (MLflow 3.17
refuses a plain ``file:`` store unless MLFLOW_ALLOW_FILE_STORE=true; sqlite needs nothing).

Serving nodes resolve the alias they follow (`resolve_registered_version`) and load what it
names (`fetch_registered_head`); the training jobs (`pipelines.registry`) register versions
and move aliases, and download the serving version to compare a candidate with it.
Downloads land in ``<state_dir>/registry-cache/<name>/<version>`` once.

Artifacts on S3-compatible storage (S3, R2, B2, MinIO): ``MLFLOW_ARTIFACT_ROOT=s3://bucket/
prefix`` is the root of the experiments the jobs create (`default_artifact_location`), and
``MLFLOW_S3_ENDPOINT_URL`` / ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` reach MLflow's
S3 client (`registry_client` exports them, so a value from ``.env`` works as well as one from
the environment). Jobs upload there directly and nodes download from there directly: the
checkpoint bytes never pass through the tracking server.

Registry down: a node must still start when the version it wants is cached. When the tracking
server does not answer (`RegistryUnreachableError`: a refused connection is seen at once, a
server that answers with errors after MLflow's own retries), `fetch_registered_head` loads the
cached version: a pinned version's directory, or for an alias the version it named when last
resolved (``<cache>/<name>/aliases.json``). `model_source` then says
``"cache (registry unreachable)"`` for that version, and the node's /health shows it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from configs.nodes import RegisteredModelRef
from configs.settings import get_settings
from models.heads import HEAD_CONFIG_FILENAME

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = [
    "SOURCE_CACHE",
    "SOURCE_REGISTRY",
    "RegistryUnreachableError",
    "download_head",
    "download_version",
    "fetch_registered_head",
    "model_source",
    "registry_cache_dir",
    "registry_client",
    "resolve_registered_version",
    "resolve_tracking_uri",
    "cached_version",
    "default_artifact_location",
    "export_artifact_store_environment",
    "state_dir",
]

logger = logging.getLogger(__name__)

SOURCE_REGISTRY = "registry"
SOURCE_CACHE = "cache (registry unreachable)"
_ALIASES_FILE = "aliases.json"
# A tracking server that does not accept a connection within this is down (MLflow's own
# retries would otherwise hold a node's start for minutes).
_PROBE_TIMEOUT_S = 2.0
# Where each loaded "<name>/<version>" came from, for the nodes' /health.
_sources: dict[str, str] = {}
_sources_lock = threading.Lock()


class RegistryUnreachableError(ConnectionError):
    """The tracking server did not answer (not: it answered that something is missing)."""


def model_source(label: str) -> str | None:
    """Where ``"<name>/<version>"`` was last loaded from in this process: `SOURCE_REGISTRY`,
    `SOURCE_CACHE`, or None when it was not loaded through the registry."""
    with _sources_lock:
        return _sources.get(label)


def _set_source(name: str, version: str, source: str) -> None:
    with _sources_lock:
        _sources[f"{name}/{version}"] = source


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


def export_artifact_store_environment() -> None:
    """Validate the artifact store's settings and put its S3 variables in ``os.environ``.

    MLflow's S3 client reads ``MLFLOW_S3_ENDPOINT_URL`` and boto3 the ``AWS_*`` keys from the
    process environment only; a value that came from ``.env`` reaches them this way.

    Raises:
        ValueError: A variable is malformed (the message names it and the fix).
    """
    for name, value in get_settings().artifact_store().environment().items():
        os.environ[name] = value


def default_artifact_location(tracking_uri: str) -> str | None:
    """The artifact root of a new experiment: ``MLFLOW_ARTIFACT_ROOT`` when set, else
    ``<state_dir>/mlartifacts`` for a local sqlite store, else None (the server's default)."""
    root = get_settings().artifact_store().artifact_root
    if root is not None:
        return root
    if tracking_uri.startswith("sqlite:"):
        # Absolute: the default ./mlruns would depend on the working directory.
        return (state_dir() / "mlartifacts").as_uri()
    return None


def registry_client(tracking_uri: str) -> MlflowClient:
    """A client of the tracking store and registry at `tracking_uri` (also set process-wide:
    ``download_artifacts("models:/...")`` reads the process-wide URIs), with the artifact
    store's S3 variables exported (`export_artifact_store_environment`)."""
    # Imported here: a node that serves a shipped head never loads MLflow (a second of
    # start-up and ~30 MB per replica process).
    import mlflow
    from mlflow.tracking import MlflowClient

    export_artifact_store_environment()
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
        import mlflow.artifacts

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


def _probe(tracking_uri: str) -> None:
    """Raise `RegistryUnreachableError` when an http(s) tracking server refuses connections."""
    url = urlparse(tracking_uri)
    if url.scheme not in ("http", "https") or not url.hostname:
        return  # a local store (sqlite, file) is as available as the disk
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise RegistryUnreachableError(
            f"MLflow tracking server {url.hostname}:{port} unreachable ({type(exc).__name__})"
        ) from exc


def _resolve_version(client: MlflowClient, tracking_uri: str, ref: RegisteredModelRef) -> str:
    from mlflow.exceptions import MlflowException

    _probe(tracking_uri)
    try:
        if ref.alias is not None:
            return str(client.get_model_version_by_alias(ref.model_name, ref.alias).version)
        return str(client.get_model_version(ref.model_name, str(ref.version)).version)
    except MlflowException as exc:
        if exc.error_code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE"):
            # Not an answer about the model: the server failed (after MLflow's retries).
            raise RegistryUnreachableError(
                f"MLflow tracking server failed ({exc.error_code})"
            ) from exc
        wanted = f"alias {ref.alias!r}" if ref.alias is not None else f"version {ref.version}"
        raise LookupError(
            f"registered model {ref.model_name!r} has no {wanted} in {tracking_uri} "
            f"({exc.error_code}); train and promote one with pipelines.text_heads, or fix "
            "model_name / alias / version / tracking_uri"
        ) from exc


def resolve_registered_version(ref: RegisteredModelRef) -> str:
    """The version `ref` names now (an alias resolved), without downloading anything.

    A resolved alias is remembered in the cache (the version to load while the registry is
    down).

    Raises:
        LookupError: The model, alias or version does not exist in the registry.
        RegistryUnreachableError: The tracking server did not answer.
    """
    tracking_uri = resolve_tracking_uri(ref.tracking_uri)
    version = _resolve_version(registry_client(tracking_uri), tracking_uri, ref)
    if ref.alias is not None:
        _remember_alias(ref.model_name, ref.alias, version)
    if model_source(f"{ref.model_name}/{version}") == SOURCE_CACHE:
        _set_source(ref.model_name, version, SOURCE_REGISTRY)  # the registry answers again
    return version


def _aliases_path(name: str) -> Path:
    return registry_cache_dir() / name / _ALIASES_FILE


def _remember_alias(name: str, alias: str, version: str) -> None:
    path = _aliases_path(name)
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
        if known.get(alias) == version:
            return
        known[alias] = version
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.partial")
        partial.write_text(json.dumps(known))
        partial.replace(path)
    except (OSError, ValueError) as exc:
        # Only the outage fallback needs this file: serving goes on without it.
        logger.warning("could not remember alias %s of %s: %s", alias, name, exc)


def cached_version(ref: RegisteredModelRef) -> str | None:
    """The version of `ref` that is in the local cache: the pinned one, or the one the alias
    named when last resolved; None when it is not cached."""
    if ref.alias is None:
        version: str | None = str(ref.version)
    else:
        path = _aliases_path(ref.model_name)
        try:
            version = json.loads(path.read_text()).get(ref.alias) if path.is_file() else None
        except (OSError, ValueError):
            version = None
    if version is None:
        return None
    target = registry_cache_dir() / ref.model_name / version
    return version if target.is_dir() and any(target.rglob(HEAD_CONFIG_FILENAME)) else None


def fetch_registered_head(ref: RegisteredModelRef) -> tuple[Path, str, str]:
    """Resolve `ref` (alias or version) and download it; returns (head dir, name, version).

    While the tracking server does not answer, the cached version is returned instead (see
    the module docstring) and `model_source` says so.

    Raises:
        LookupError: The model, alias or version does not exist in the registry.
        RegistryUnreachableError: The registry does not answer and nothing usable is cached.
    """
    try:
        version = resolve_registered_version(ref)
    except RegistryUnreachableError as exc:
        cached = cached_version(ref)
        if cached is None:
            raise RegistryUnreachableError(
                f"{exc}; and {ref.model_name!r} "
                f"{'alias ' + repr(ref.alias) if ref.alias else 'version ' + str(ref.version)} "
                "is not in the local registry cache: start MLflow, or pin a cached version"
            ) from exc
        logger.warning(
            "%s; loading %s version %s from the local cache", exc, ref.model_name, cached
        )
        _set_source(ref.model_name, cached, SOURCE_CACHE)
        return download_head(ref.model_name, cached), ref.model_name, cached
    head = download_head(ref.model_name, version)
    _set_source(ref.model_name, version, SOURCE_REGISTRY)
    return head, ref.model_name, version
