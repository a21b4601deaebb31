"""Where MLflow keeps model artifacts: a local directory, or an S3-compatible bucket (AWS S3,
Cloudflare R2, Backblaze B2, MinIO).

Built from the environment (``Settings.artifact_store()``): ``MLFLOW_ARTIFACT_ROOT`` is the
artifact root of every experiment the retraining jobs create, ``MLFLOW_S3_ENDPOINT_URL`` the
S3 API of a store that is not AWS, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` its
credentials. MLflow and boto3 read those same variables when they upload (the jobs) and
download (the serving nodes); validating them here turns a typo into an error naming the
variable at start-up instead of a boto3 stack trace at the first download.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from pydantic import SecretStr, field_validator, model_validator

from configs.base import StrictModel

__all__ = ["ARTIFACT_ROOT_ENV", "S3_ENDPOINT_ENV", "ArtifactStore", "parse_s3_uri"]

ARTIFACT_ROOT_ENV = "MLFLOW_ARTIFACT_ROOT"
S3_ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"
ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
# S3's bucket naming rules (R2, B2 and MinIO follow them): 3-63 characters, lowercase letters,
# digits, dots and hyphens, starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into (bucket, prefix without slashes at either end).

    Raises:
        ValueError: The URI is not ``s3://`` or its bucket breaks S3's naming rules.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        raise ValueError(f"{uri!r} is not an s3:// URI; write s3://<bucket>/<prefix>")
    bucket = parsed.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(
            f"{uri!r}: bucket {bucket!r} is not a valid S3 bucket name (3-63 lowercase "
            "letters, digits, dots or hyphens); write s3://<bucket>/<prefix>, e.g. "
            "s3://socialplay-models/mlflow"
        )
    return bucket, parsed.path.strip("/")


class ArtifactStore(StrictModel):
    """The artifact store of the MLflow experiments the jobs create, and its S3 access."""

    artifact_root: str | None = None
    """Artifact root of new MLflow experiments (MLFLOW_ARTIFACT_ROOT): ``s3://bucket/prefix``
    for an S3-compatible store, an absolute path or ``file://`` URI for a local one. None: the
    tracking server's default, or ``<state_dir>/mlartifacts`` with a local sqlite store. An
    experiment keeps the root it was created with."""
    s3_endpoint_url: str | None = None
    """S3 API of a store that is not AWS (MLFLOW_S3_ENDPOINT_URL), e.g. ``http://minio:9000``,
    ``https://<account>.r2.cloudflarestorage.com``; None: AWS S3."""
    access_key_id: str | None = None
    """S3 access key id (AWS_ACCESS_KEY_ID); None: boto3's own lookup (an instance role, a
    shared credentials file)."""
    secret_access_key: SecretStr | None = None
    """S3 secret key (AWS_SECRET_ACCESS_KEY), required with the key id; never logged."""

    @field_validator("artifact_root")
    @classmethod
    def _root(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        scheme = urlparse(value).scheme
        if scheme == "s3":
            parse_s3_uri(value)
            return value.rstrip("/")
        if scheme in ("", "file") and (value.startswith("/") or value.startswith("file:///")):
            return value
        raise ValueError(
            f"{ARTIFACT_ROOT_ENV}={value!r} is not supported; use s3://<bucket>/<prefix> for "
            "an S3-compatible store (S3, R2, B2, MinIO) or an absolute path / file:/// URI"
        )

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parsed = urlparse(value.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"{S3_ENDPOINT_ENV}={value!r} is not an http(s) URL; write the S3 API's "
                "address, e.g. http://minio:9000 or https://<account>.r2.cloudflarestorage.com"
            )
        if parsed.path not in ("", "/"):
            raise ValueError(
                f"{S3_ENDPOINT_ENV}={value!r} has a path ({parsed.path!r}); give the "
                f"endpoint only and put the bucket in {ARTIFACT_ROOT_ENV}=s3://<bucket>/<prefix>"
            )
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _credentials_in_pairs(self) -> ArtifactStore:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            given, missing = (
                (ACCESS_KEY_ENV, SECRET_KEY_ENV)
                if self.access_key_id is not None
                else (SECRET_KEY_ENV, ACCESS_KEY_ENV)
            )
            raise ValueError(f"{given} is set but {missing} is not: set both, or neither")
        return self

    @property
    def is_s3(self) -> bool:
        """Whether new experiments keep their artifacts in an S3-compatible bucket."""
        return self.artifact_root is not None and self.artifact_root.startswith("s3://")

    def environment(self) -> dict[str, str]:
        """The variables MLflow and boto3 read for S3 access, for the ones that are set."""
        values = {
            S3_ENDPOINT_ENV: self.s3_endpoint_url,
            ACCESS_KEY_ENV: self.access_key_id,
            SECRET_KEY_ENV: (
                self.secret_access_key.get_secret_value() if self.secret_access_key else None
            ),
        }
        return {name: value for name, value in values.items() if value is not None}
