"""API key resolution: configured keys, key files, the development key, refusal."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from configs.settings import (
    NoApiKeyError,
    Settings,
    ensure_dev_key,
    read_key_file,
    resolve_api_keys,
)

ENV_VARS = ("API_KEYS", "API_KEY", "API_KEY_FILE", "SOCIALPLAY_DEV_MODE", "ALLOWED_ORIGINS")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env file from the repository


def test_keys_merge_api_keys_api_key_and_key_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# ops keys\nfile-key\n\n  spaced-key  \nb\n", encoding="utf-8")
    monkeypatch.setenv("API_KEYS", " a, b ,,")
    monkeypatch.setenv("API_KEY", "single")
    monkeypatch.setenv("API_KEY_FILE", str(key_file))
    assert resolve_api_keys(Settings()) == ["a", "b", "single", "file-key", "spaced-key"]


def test_no_key_outside_dev_mode_refuses_to_start() -> None:
    with pytest.raises(NoApiKeyError, match="set API_KEYS"):
        resolve_api_keys(Settings())


def test_unreadable_key_file_names_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEY_FILE", "/nonexistent/keys.txt")
    with pytest.raises(NoApiKeyError, match="/nonexistent/keys.txt"):
        resolve_api_keys(Settings())


def test_dev_mode_creates_one_private_key_and_prints_it_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOCIALPLAY_DEV_MODE", "1")
    monkeypatch.setenv("SOCIALPLAY_STATE_DIR", str(tmp_path / "state"))
    first = resolve_api_keys(Settings())
    printed = capsys.readouterr().out
    second = resolve_api_keys(Settings())
    assert first == second and len(first[0]) > 20
    assert first[0] in printed
    assert capsys.readouterr().out == "", "printed once, by the process that created it"
    mode = (tmp_path / "state" / "dev-api-key").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_configured_keys_win_over_dev_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOCIALPLAY_DEV_MODE", "1")
    monkeypatch.setenv("SOCIALPLAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("API_KEYS", "real")
    assert resolve_api_keys(Settings()) == ["real"]
    assert not (tmp_path / "state").exists()


def test_ensure_dev_key_replaces_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "dev-api-key").write_text("", encoding="utf-8")
    key, created = ensure_dev_key(tmp_path)
    assert created and read_key_file(tmp_path / "dev-api-key") == [key]


def test_allowed_origins_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_ORIGINS", "http://a.example, http://b.example,")
    assert Settings().origins() == ["http://a.example", "http://b.example"]
