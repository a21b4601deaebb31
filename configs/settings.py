"""Environment settings: the one place the service reads environment variables.

Everything that an operator tunes per deployment (replicas, batch sizes, thresholds) lives in
``serve_config.yaml``; what lives here are secrets and addresses that differ per environment.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from configs.artifacts import (
    ACCESS_KEY_ENV,
    ARTIFACT_ROOT_ENV,
    S3_ENDPOINT_ENV,
    SECRET_KEY_ENV,
    ArtifactStore,
)

logger = logging.getLogger(__name__)

DEV_KEY_FILENAME = "dev-api-key"

# What a key may do. Every key is a client key; moderator and operator keys are client keys too.
CLIENT_SCOPE = "client"
MODERATOR_SCOPE = "moderator"
OPERATOR_SCOPE = "operator"
ALL_SCOPES = frozenset({CLIENT_SCOPE, MODERATOR_SCOPE, OPERATOR_SCOPE})
HASH_SECRET_ENV = "SOCIALPLAY_HASH_SECRET"
# Development mode only (SOCIALPLAY_DEV_MODE=1 without SOCIALPLAY_HASH_SECRET): public, so the
# hashes it makes protect nothing; refused everywhere else.
DEV_HASH_SECRET = "socialplay-development-hash-secret-not-private"
MIN_HASH_SECRET_CHARS = 16


class Settings(BaseSettings):
    """Values read from the environment (and `.env` when present)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    api_keys: str = Field(default="", validation_alias="API_KEYS")
    """Comma-separated client API keys accepted in the X-API-Key header (scope client)."""
    api_key: str = Field(default="", validation_alias="API_KEY")
    """A single client API key (the design document's variable); merged with API_KEYS."""
    api_key_file: str = Field(default="", validation_alias="API_KEY_FILE")
    """Path of a file with one client API key per line; blank lines and # comments ignored."""
    moderator_api_keys: str = Field(default="", validation_alias="MODERATOR_API_KEYS")
    """Comma-separated moderator keys (scopes client and moderator): only they may post
    moderator reviews, which become training labels."""
    operator_api_keys: str = Field(default="", validation_alias="OPERATOR_API_KEYS")
    """Comma-separated operator keys (scopes client and operator): only they may read the
    detailed health report (GET /api/v1/health)."""
    hash_secret: str = Field(default="", validation_alias=HASH_SECRET_ENV)
    """Secret key of the HMAC-SHA256 that replaces user and reviewer ids in the audit log and
    training exports; required outside development mode, the same on the service and the jobs."""
    dev_mode: bool = Field(default=False, validation_alias="SOCIALPLAY_DEV_MODE")
    """Development flag: with no key configured, create one, store it in the state directory and
    print it once, instead of refusing to start."""
    state_dir: str = Field(default=".socialplay", validation_alias="SOCIALPLAY_STATE_DIR")
    """Directory for local state (the development key, embedded stores)."""
    grpc_loopback_only: bool = Field(
        default=False, validation_alias="SOCIALPLAY_GRPC_LOOPBACK_ONLY"
    )
    """Refuse gRPC calls from other hosts (PERMISSION_DENIED). Ray's gRPC proxy listens on every
    interface whatever http_options.host says; `make serve` sets this when HTTP binds loopback."""
    allowed_origins: str = Field(default="", validation_alias="ALLOWED_ORIGINS")
    """Comma-separated CORS origins; empty means no cross-origin access."""
    redis_url: str = Field(default="", validation_alias="REDIS_URL")
    """Redis server URL; empty means the in-process cache."""
    mongodb_url: str = Field(default="", validation_alias="MONGODB_URL")
    """MongoDB URL; empty means the embedded document store."""
    mlflow_tracking_uri: str = Field(default="", validation_alias="MLFLOW_TRACKING_URI")
    """MLflow tracking server; empty means a local sqlite store in the state dir."""
    mlflow_artifact_root: str = Field(default="", validation_alias=ARTIFACT_ROOT_ENV)
    """Artifact root of the MLflow experiments the retraining jobs create: s3://bucket/prefix
    (S3, R2, B2, MinIO) or an absolute path; empty means the tracking server's default (or
    <state_dir>/mlartifacts with the local sqlite store)."""
    mlflow_s3_endpoint_url: str = Field(default="", validation_alias=S3_ENDPOINT_ENV)
    """S3 API address of a store that is not AWS, e.g. http://minio:9000; read by MLflow and
    boto3 on every upload and download. Empty means AWS S3."""
    aws_access_key_id: str = Field(default="", validation_alias=ACCESS_KEY_ENV)
    """Access key id of the S3-compatible artifact store (with AWS_SECRET_ACCESS_KEY); empty
    means boto3's own lookup (instance role, credentials file)."""
    aws_secret_access_key: str = Field(default="", validation_alias=SECRET_KEY_ENV)
    """Secret key of the S3-compatible artifact store (with AWS_ACCESS_KEY_ID)."""

    @field_validator(
        "api_keys",
        "api_key",
        "api_key_file",
        "moderator_api_keys",
        "operator_api_keys",
        "hash_secret",
        "allowed_origins",
        "mlflow_artifact_root",
        "mlflow_s3_endpoint_url",
        "aws_access_key_id",
        mode="before",
    )
    @classmethod
    def _strip(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    def artifact_store(self) -> ArtifactStore:
        """The MLflow artifact store and its S3 access, validated.

        Raises:
            ValueError: A variable is malformed (the message names it and the fix).
        """
        secret = self.aws_secret_access_key.strip()
        try:
            return ArtifactStore(
                artifact_root=self.mlflow_artifact_root or None,
                s3_endpoint_url=self.mlflow_s3_endpoint_url or None,
                access_key_id=self.aws_access_key_id or None,
                secret_access_key=SecretStr(secret) if secret else None,
            )
        except ValidationError as exc:
            messages = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise ValueError(f"MLflow artifact store: {messages}") from None

    def origins(self) -> list[str]:
        """CORS origins as a list."""
        return [o.strip() for o in self.allowed_origins.split(",") if o.strip()]

    def configured_keys(self) -> list[str]:
        """Every configured key without duplicates: API_KEYS, API_KEY, API_KEY_FILE, then
        MODERATOR_API_KEYS and OPERATOR_API_KEYS."""
        return list(self.scoped_keys())

    def scoped_keys(self) -> dict[str, frozenset[str]]:
        """Each configured key and its scopes; a key listed in several places gets them all."""
        client = _split(self.api_keys)
        if self.api_key:
            client.append(self.api_key)
        if self.api_key_file:
            client.extend(read_key_file(Path(self.api_key_file)))
        scoped: dict[str, frozenset[str]] = {}
        for keys, scopes in (
            (client, {CLIENT_SCOPE}),
            (_split(self.moderator_api_keys), {CLIENT_SCOPE, MODERATOR_SCOPE}),
            (_split(self.operator_api_keys), {CLIENT_SCOPE, OPERATOR_SCOPE}),
        ):
            for key in keys:
                scoped[key] = scoped.get(key, frozenset()) | scopes
        return scoped


def _split(keys: str) -> list[str]:
    return [k.strip() for k in keys.split(",") if k.strip()]


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once.

    Tests that change the environment call ``get_settings.cache_clear()`` (an autouse fixture
    in ``tests/conftest.py`` does it before every test).
    """
    return Settings()


class NoApiKeyError(RuntimeError):
    """Raised when the service would start without any API key."""


def read_key_file(path: Path) -> list[str]:
    """Read one key per line from ``path``; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NoApiKeyError(
            f"API_KEY_FILE={str(path)!r} cannot be read ({exc.strerror}); "
            "point it at a readable file with one key per line"
        ) from exc
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def ensure_dev_key(state_dir: Path) -> tuple[str, bool]:
    """Return the development key stored in ``state_dir``, creating it when absent.

    The file is created with O_EXCL so several replicas starting together agree on one key.
    Returns ``(key, created)``; ``created`` is True only for the process that wrote it.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / DEV_KEY_FILENAME
    key = "sp-dev-" + secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = read_key_file(path)
        if existing:
            return existing[0], False
        # An empty file left by a crash: replace it rather than run without a key.
        path.write_text(key + "\n", encoding="utf-8")
        return key, True
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key, True


def resolve_api_keys(settings: Settings) -> list[str]:
    """Keys the ingress accepts; refuses to run keyless outside development mode."""
    return list(resolve_scoped_keys(settings))


def resolve_scoped_keys(settings: Settings) -> dict[str, frozenset[str]]:
    """Keys the ingress accepts and their scopes; refuses to run keyless outside development
    mode. The development key has every scope."""
    keys = settings.scoped_keys()
    if keys:
        return keys
    if not settings.dev_mode:
        raise NoApiKeyError(
            "no API key configured: set API_KEYS (comma-separated), API_KEY, API_KEY_FILE, "
            "MODERATOR_API_KEYS or OPERATOR_API_KEYS, or set SOCIALPLAY_DEV_MODE=1 to create a "
            "development key"
        )
    key, created = ensure_dev_key(Path(settings.state_dir))
    if created:
        # Printed once, by the process that created it, so the developer can copy it.
        print(f"SocialPlay development API key (stored in {settings.state_dir}): {key}")
        logger.warning("Created a development API key in %s", settings.state_dir)
    return {key: ALL_SCOPES}


class MissingHashSecretError(RuntimeError):
    """Raised when user ids would be hashed without a private secret outside development mode."""


def resolve_hash_secret(settings: Settings) -> bytes:
    """The HMAC key of user-id hashes (``SOCIALPLAY_HASH_SECRET``).

    Refused when unset or short outside development mode: a public salt lets anyone who guesses
    a user id find it in the audit log or an export. Development mode without it uses a fixed,
    public default.
    """
    secret = settings.hash_secret
    if secret:
        if len(secret) < MIN_HASH_SECRET_CHARS:
            raise MissingHashSecretError(
                f"{HASH_SECRET_ENV} has {len(secret)} characters; use at least "
                f"{MIN_HASH_SECRET_CHARS} random ones, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return secret.encode("utf-8")
    if settings.dev_mode:
        return DEV_HASH_SECRET.encode("utf-8")
    raise MissingHashSecretError(
        f"{HASH_SECRET_ENV} is not set: user and reviewer ids in the audit log and in training "
        "exports are HMAC-SHA256 hashes keyed by it. Set it to a private random value (e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`), the same for the "
        "service and the retraining jobs, or set SOCIALPLAY_DEV_MODE=1 for a public development "
        "default"
    )
