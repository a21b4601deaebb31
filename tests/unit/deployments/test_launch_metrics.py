"""The launcher's metrics port: 8080 unless configured, refused when taken, handed to Ray
through deployments.serve_run (no Ray started here)."""

from __future__ import annotations

import socket
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from deployments import serve_run
from deployments.launch import (
    DEFAULT_METRICS_PORT,
    METRICS_PORT_ENV,
    metrics_port,
    refuse_taken_port,
    serve_run_command,
)


def test_8080_unless_configured() -> None:
    assert DEFAULT_METRICS_PORT == 8080
    assert metrics_port(None, {}) == 8080
    assert metrics_port(None, {METRICS_PORT_ENV: " "}) == 8080


def test_the_environment_then_the_flag_choose_the_port() -> None:
    assert metrics_port(None, {METRICS_PORT_ENV: "9191"}) == 9191
    assert metrics_port("9292", {METRICS_PORT_ENV: "9191"}) == 9292


@pytest.mark.parametrize("value", ["abc", "0", "65536", "-1", "80.5"])
def test_a_bad_port_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(SystemExit, match=f"{METRICS_PORT_ENV} must be a port number.*{value!r}"):
        metrics_port(None, {METRICS_PORT_ENV: value})
    with pytest.raises(SystemExit, match="--metrics-port must be a port number"):
        metrics_port(value, {})


def test_a_taken_port_is_refused_with_the_fix() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"metrics port {port} is in use.*{METRICS_PORT_ENV}"):
            refuse_taken_port(port)


def test_the_child_starts_ray_on_the_port_unless_ray_runs_elsewhere() -> None:
    config = Path("/srv/serve_config.yaml")
    command = serve_run_command(config, 8080, {})
    assert command == [
        sys.executable,
        "-m",
        "deployments.serve_run",
        "--metrics-export-port",
        "8080",
        str(config),
    ]
    # An existing cluster (RAY_ADDRESS) has its own metrics port: plain `serve run`.
    existing = serve_run_command(config, 8080, {"RAY_ADDRESS": "ray://head:10001"})
    assert existing == [sys.executable, "-m", "ray.serve.scripts", "run", str(config)]


def test_serve_run_inits_ray_with_the_port_then_hands_over(monkeypatch: pytest.MonkeyPatch) -> None:
    # Stand-ins for the three Ray names serve_run uses: importing Ray's CLI costs seconds.
    calls: list[tuple[str, Any]] = []
    ray = types.ModuleType("ray")
    ray.init = lambda **kwargs: calls.append(("init", kwargs))  # type: ignore[attr-defined]
    constants = types.ModuleType("ray.serve._private.constants")
    constants.SERVE_NAMESPACE = "serve-ns"  # type: ignore[attr-defined]
    scripts = types.ModuleType("ray.serve.scripts")
    scripts.cli = types.SimpleNamespace(  # type: ignore[attr-defined]
        main=lambda args, prog_name: calls.append(("serve", (prog_name, args)))
    )
    for name, module in (
        ("ray", ray),
        ("ray.serve", types.ModuleType("ray.serve")),
        ("ray.serve._private", types.ModuleType("ray.serve._private")),
        ("ray.serve._private.constants", constants),
        ("ray.serve.scripts", scripts),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    assert serve_run.main(["--metrics-export-port", "8181", "serve_config.yaml", "-a", "x"]) == 0
    assert calls == [
        ("init", {"namespace": "serve-ns", "_metrics_export_port": 8181}),
        ("serve", ("serve", ["run", "serve_config.yaml", "-a", "x"])),
    ]
