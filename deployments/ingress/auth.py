"""API keys, their scopes and the paths that need none.

Every path of the app needs a valid key except liveness and the API docs (``PUBLIC_PATHS``),
matched on the path *inside* the app: Ray Serve mounts an application under its
``route_prefix`` by setting the ASGI ``root_path`` (``/sp``) and keeping the full path in
``path`` (``/sp/api/v1/...``), so a check on the raw path would miss every route there.

A wrong key and a missing key are both 401 (the caller is not authenticated); 403 means a
valid key without the scope a route needs. Logs and metrics name a key by its ``key_id``
(the first 8 hex characters of its sha256), never by the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from configs.settings import (
    CLIENT_SCOPE,
    MODERATOR_SCOPE,
    OPERATOR_SCOPE,
    Settings,
    resolve_scoped_keys,
)

API_KEY_HEADER = "X-API-Key"
# Liveness and the API docs: everything else needs a key. Exact matches only (``/health/``
# or ``/docs/x`` need a key too).
PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
# Where the identity of the request's key is kept (``request.state.api_key``).
IDENTITY_STATE_KEY = "api_key"

__all__ = [
    "API_KEY_HEADER",
    "CLIENT_SCOPE",
    "MODERATOR_SCOPE",
    "OPERATOR_SCOPE",
    "PUBLIC_PATHS",
    "ApiKeys",
    "AuthError",
    "KeyIdentity",
    "key_id",
    "route_path",
]


def key_id(key: str) -> str:
    """How logs and metrics name a key: the first 8 hex characters of its sha256."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class KeyIdentity:
    """Who called: the key's id (never the key) and what it may do."""

    key_id: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether the key has ``scope``."""
        return scope in self.scopes


class AuthError(Exception):
    """A request refused for its key: 401 (missing or wrong key) or 403 (missing scope)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = API_KEY_HEADER


def missing_key_error() -> AuthError:
    """401: no key sent."""
    return AuthError(401, "missing_api_key", f"send your API key in the {API_KEY_HEADER} header")


def invalid_key_error() -> AuthError:
    """401: a key that is not one of ours."""
    return AuthError(
        401, "invalid_api_key", f"the API key in the {API_KEY_HEADER} header is not valid"
    )


def missing_scope_error(scope: str, identity: KeyIdentity) -> AuthError:
    """403: a valid key without ``scope``."""
    variable = {MODERATOR_SCOPE: "MODERATOR_API_KEYS", OPERATOR_SCOPE: "OPERATOR_API_KEYS"}.get(
        scope, "API_KEYS"
    )
    return AuthError(
        403,
        "missing_scope",
        f"this route needs a key with the {scope!r} scope; key {identity.key_id} has "
        f"{sorted(identity.scopes)} (operators list {scope} keys in {variable})",
    )


def require_scope(identity: KeyIdentity, scope: str) -> KeyIdentity:
    """``identity`` when it has ``scope``, else AuthError 403 naming the scope."""
    if not identity.allows(scope):
        raise missing_scope_error(scope, identity)
    return identity


@dataclass(frozen=True)
class ApiKeys:
    """The keys this replica accepts, each with its identity, and how they were configured."""

    # (sha256 of the key, its identity): comparing digests keeps every comparison the same
    # length, so timing says nothing about a key's length either.
    entries: tuple[tuple[bytes, KeyIdentity], ...] = ()
    # "configured" (API_KEYS, API_KEY, API_KEY_FILE, MODERATOR_/OPERATOR_API_KEYS),
    # "development" (a generated key) or "unset"; the detailed health report shows it.
    mode: str = "unset"

    @classmethod
    def of(cls, keys: Mapping[str, Iterable[str]], mode: str = "configured") -> ApiKeys:
        """Keys and their scopes (tests; ``from_settings`` in a replica)."""
        return cls(
            tuple(
                (_digest(key), KeyIdentity(key_id(key), frozenset(scopes)))
                for key, scopes in keys.items()
            ),
            mode,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """The configured keys; refuses to start keyless outside development mode."""
        keys = resolve_scoped_keys(settings)
        mode = "configured" if settings.scoped_keys() else "development"
        return cls.of(keys, mode)

    def authenticate(self, candidate: str) -> KeyIdentity | None:
        """The identity of ``candidate``, or None when it is not one of the keys.

        Compared against every key, without an early exit, so timing says nothing about which
        key (or how much of one) matched.
        """
        supplied = _digest(candidate)
        found: KeyIdentity | None = None
        for digest, identity in self.entries:
            if hmac.compare_digest(supplied, digest):
                found = identity
        return found

    def check(self, supplied: str | None) -> KeyIdentity:
        """The identity of ``supplied``; AuthError 401 when it is missing or wrong."""
        if supplied is None or not supplied.strip():
            raise missing_key_error()
        identity = self.authenticate(supplied.strip())
        if identity is None:
            raise invalid_key_error()
        return identity


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def route_path(scope: Mapping[str, Any]) -> str:
    """The request's path inside the app: ``path`` without the ``root_path`` it is mounted at.

    Ray Serve (2.x) and uvicorn keep the mount point in both ``root_path`` and ``path``; an
    older convention leaves it out of ``path``. Either way the answer is what routing matches.
    """
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        rest = path[len(root_path) :]
        if rest == "" or rest.startswith("/"):
            return rest
    return path


def is_public(scope: Mapping[str, Any]) -> bool:
    """Whether the request may go without a key (liveness and docs only)."""
    return route_path(scope) in PUBLIC_PATHS


def store_identity(scope: MutableMapping[str, Any], identity: KeyIdentity) -> None:
    """Keep the key's identity on the request (``request.state.api_key``)."""
    scope.setdefault("state", {})[IDENTITY_STATE_KEY] = identity
