"""User-id hashes: HMAC-SHA256 keyed by SOCIALPLAY_HASH_SECRET, refused without it outside
development mode."""

from __future__ import annotations

import hashlib

import pytest

from configs.settings import MissingHashSecretError
from models import privacy
from models.ranking import hash_user_id
from storage.audit_log import hash_id

SECRET = "a-private-secret-0123456789"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.delenv("SOCIALPLAY_DEV_MODE", raising=False)
    monkeypatch.setenv("SOCIALPLAY_HASH_SECRET", SECRET)
    monkeypatch.chdir(str(tmp_path))  # no stray .env file from the repository


def test_same_id_and_secret_give_the_same_hash_another_secret_another() -> None:
    first = privacy.keyed_hash("user-1", b"secret-one-0123456", "audit")
    assert first == privacy.keyed_hash("user-1", b"secret-one-0123456", "audit")
    assert first != privacy.keyed_hash("user-1", b"secret-two-0123456", "audit")
    assert first != privacy.keyed_hash("user-2", b"secret-one-0123456", "audit")
    assert first != privacy.keyed_hash("user-1", b"secret-one-0123456", "mf")
    assert len(first) == 32 and all(c in "0123456789abcdef" for c in first)


def test_the_hash_cannot_be_computed_from_the_public_salt_alone() -> None:
    public = hashlib.sha256(b"socialplay-audit\x00user-1").hexdigest()[:32]
    assert hash_id("user-1", "socialplay-audit") != public


def test_audit_log_and_training_exports_use_the_process_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = privacy.keyed_hash("user-1", SECRET.encode(), "ctx")
    assert hash_id("user-1", "ctx") == expected
    assert hash_user_id("user-1", "ctx") == expected
    from configs.settings import get_settings

    monkeypatch.setenv("SOCIALPLAY_HASH_SECRET", "another-secret-0123456789")
    get_settings.cache_clear()
    assert hash_user_id("user-1", "ctx") != expected


def test_refused_when_unset_outside_development_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOCIALPLAY_HASH_SECRET")
    with pytest.raises(MissingHashSecretError, match="SOCIALPLAY_HASH_SECRET is not set"):
        hash_id("user-1", "ctx")


def test_short_secrets_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCIALPLAY_HASH_SECRET", "short")
    with pytest.raises(MissingHashSecretError, match="at least 16"):
        privacy.process_hash_secret()


def test_development_mode_has_a_fixed_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOCIALPLAY_HASH_SECRET")
    monkeypatch.setenv("SOCIALPLAY_DEV_MODE", "1")
    first = hash_id("user-1", "ctx")
    from configs.settings import get_settings

    get_settings.cache_clear()
    assert hash_id("user-1", "ctx") == first
