"""Keyed hashes of user and reviewer ids: how raw ids are replaced before anything is stored.

HMAC-SHA256 keyed by ``SOCIALPLAY_HASH_SECRET`` (``configs.settings.resolve_hash_secret``):
without the secret, the hash of a guessed id cannot be computed, so an audit log or a training
export does not reveal which users it holds. The ``context`` (a config's ``user_id_salt``) is
public; it only keeps the hashes of one use apart from another's.
"""

from __future__ import annotations

import hashlib
import hmac

from configs.settings import get_settings, resolve_hash_secret

HASH_HEX_CHARS = 32


def keyed_hash(raw_id: str, secret: bytes, context: str) -> str:
    """HMAC-SHA256 of ``context`` and ``raw_id`` under ``secret``, as 32 hex characters.

    Long enough that two users of one service never collide in practice.
    """
    message = f"{context}\x00{raw_id}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]


def process_hash_secret() -> bytes:
    """This process's hash secret (``SOCIALPLAY_HASH_SECRET``).

    Raises ``MissingHashSecretError`` naming the variable when it is unset outside development
    mode; services call it at start-up so they refuse to start rather than fail later.
    """
    return resolve_hash_secret(get_settings())


def hash_user_id(user_id: str, context: str) -> str:
    """The keyed hash of a user or reviewer id under this process's secret: the one function
    behind every stored id hash (audit log, training exports, collaborative factors)."""
    return keyed_hash(user_id, process_hash_secret(), context)
