"""Keys and scopes from the environment: client keys as before, moderator and operator keys on
their own variables; the development key has every scope; key ids, never keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.settings import MissingHashSecretError, Settings
from deployments.ingress.auth import ApiKeys, key_id
from deployments.ingress.state import IngressState

ENV_VARS = (
    "API_KEYS",
    "API_KEY",
    "API_KEY_FILE",
    "MODERATOR_API_KEYS",
    "OPERATOR_API_KEYS",
    "SOCIALPLAY_DEV_MODE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env file from the repository


def test_plain_keys_are_client_keys_and_scoped_keys_add_scopes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_KEYS", "client-a, both")
    monkeypatch.setenv("MODERATOR_API_KEYS", "mod-1,both")
    monkeypatch.setenv("OPERATOR_API_KEYS", "ops-1")
    keys = ApiKeys.from_settings(Settings())
    client, moderator, operator, both = (
        keys.authenticate(k) for k in ("client-a", "mod-1", "ops-1", "both")
    )
    assert client is not None and client.scopes == {"client"}
    assert moderator is not None and moderator.scopes == {"client", "moderator"}
    assert operator is not None and operator.scopes == {"client", "operator"}
    assert both is not None and both.scopes == {"client", "moderator"}
    assert keys.authenticate("client-") is None and keys.authenticate("") is None
    assert keys.mode == "configured"
    assert client.key_id == key_id("client-a") and len(client.key_id) == 8
    assert "client-a" not in repr(keys), "neither the keys nor their ids' sources are shown"


def test_a_moderator_key_alone_is_enough_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODERATOR_API_KEYS", "mod-only")
    identity = ApiKeys.from_settings(Settings()).authenticate("mod-only")
    assert identity is not None and identity.allows("moderator")


def test_the_development_key_has_every_scope(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SOCIALPLAY_DEV_MODE", "1")
    monkeypatch.setenv("SOCIALPLAY_STATE_DIR", str(tmp_path / "state"))
    keys = ApiKeys.from_settings(Settings())
    dev_key = (tmp_path / "state" / "dev-api-key").read_text().strip()
    identity = keys.authenticate(dev_key)
    assert keys.mode == "development"
    assert identity is not None and identity.scopes == {"client", "moderator", "operator"}


def test_the_ingress_refuses_to_start_without_the_hash_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_KEYS", "k")
    monkeypatch.delenv("SOCIALPLAY_HASH_SECRET", raising=False)
    with pytest.raises(MissingHashSecretError, match="SOCIALPLAY_HASH_SECRET"):
        IngressState.create({}, Settings())
