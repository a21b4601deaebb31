"""The launcher: prints a generated development key only, refuses what the replicas would
refuse, and confines Ray's gRPC proxy (message cap, loopback only when HTTP is)."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.settings import Settings
from deployments.launch import grpc_env, startup_keys

GRPC = {"port": 9000, "grpc_servicer_functions": ["x.add_servicer"]}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("API_KEYS", "API_KEY", "API_KEY_FILE", "MODERATOR_API_KEYS", "OPERATOR_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SOCIALPLAY_DEV_MODE", raising=False)
    monkeypatch.setenv("SOCIALPLAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)


def test_a_configured_key_is_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "configured-secret-key")
    keys, printable = startup_keys(Settings())
    assert printable is None and "configured-secret-key" in keys


def test_the_generated_development_key_is_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCIALPLAY_DEV_MODE", "1")
    monkeypatch.delenv("SOCIALPLAY_HASH_SECRET", raising=False)
    keys, printable = startup_keys(Settings())
    assert printable is not None and printable.startswith("sp-dev-") and printable in keys


def test_refuses_to_start_without_the_hash_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "k")
    monkeypatch.delenv("SOCIALPLAY_HASH_SECRET", raising=False)
    with pytest.raises(SystemExit, match="SOCIALPLAY_HASH_SECRET is not set"):
        startup_keys(Settings())


def test_grpc_is_capped_at_the_body_limit_and_kept_local_with_http() -> None:
    ingress = {"name": "Ingress", "user_config": {"limits": {"max_body_bytes": 65536}}}
    config = {
        "http_options": {"host": "127.0.0.1"},
        "grpc_options": GRPC,
        "applications": [{"deployments": [ingress]}],
    }
    assert grpc_env(config, {}) == {
        "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": "65536",
        "SOCIALPLAY_GRPC_LOOPBACK_ONLY": "1",
    }
    public = {**config, "http_options": {"host": "0.0.0.0"}}
    assert grpc_env(public, {}) == {"RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": "65536"}
    default_limit = {"http_options": {"host": "0.0.0.0"}, "grpc_options": GRPC}
    assert grpc_env(default_limit, {}) == {"RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": "1048576"}
    operator = {"RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": "4096"}
    assert "RAY_SERVE_GRPC_MAX_MESSAGE_SIZE" not in grpc_env(config, operator), "theirs wins"
    assert grpc_env({"http_options": {"host": "127.0.0.1"}}, {}) == {}, "no gRPC, nothing"
