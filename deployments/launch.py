"""``make serve``: start Ray locally, deploy ``serve_config.yaml``, print the URL and, in
development mode, the generated key (never a configured one).

Runs ``serve run`` as a child in its own process group, so that Ctrl-C here reaches it once, as
a deliberate SIGINT (its graceful shutdown), whatever the terminal or process manager did.

Ray starts with its Prometheus metrics on a fixed port (8080, or ``--metrics-port`` /
``SOCIALPLAY_METRICS_PORT``), printed at start, so a scraper finds them where the docs say; a
port already taken is refused before anything starts.

Before starting it refuses what the replicas would refuse (no API key, no
``SOCIALPLAY_HASH_SECRET`` outside development mode), and confines Ray's gRPC proxy as far as
Ray allows: messages capped at the HTTP body limit, and, when HTTP binds loopback, calls from
other hosts refused (Ray 2.60 listens for gRPC on every interface; docs/operations.md).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from configs.ingress import LimitsConfig
from configs.settings import (
    OPERATOR_SCOPE,
    MissingHashSecretError,
    NoApiKeyError,
    Settings,
    get_settings,
    resolve_hash_secret,
    resolve_scoped_keys,
)

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
METRICS_PORT_ENV = "SOCIALPLAY_METRICS_PORT"
DEFAULT_METRICS_PORT = 8080


def metrics_port(flag: str | None, environ: Mapping[str, str]) -> int:
    """The port Ray exports Prometheus metrics on: ``--metrics-port``, else
    ``SOCIALPLAY_METRICS_PORT``, else 8080. Exits naming the setting when it is not a port."""
    if flag is not None:
        raw, source = flag.strip(), "--metrics-port"
    else:
        raw, source = environ.get(METRICS_PORT_ENV, "").strip(), METRICS_PORT_ENV
        if not raw:
            return DEFAULT_METRICS_PORT
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise SystemExit(f"{source} must be a port number from 1 to 65535, got {raw!r}")
    return port


def refuse_taken_port(port: int) -> None:
    """Exit with the fix when ``port`` is taken: Ray would silently export nowhere useful."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            raise SystemExit(
                f"the metrics port {port} is in use (another Ray or service?); pick a free one "
                f"with {METRICS_PORT_ENV}=<port> or --metrics-port <port>"
            ) from None


def serve_run_command(config_path: Path, port: int, environ: Mapping[str, str]) -> list[str]:
    """The child that runs ``serve run``: through ``deployments.serve_run``, which starts the
    local Ray on ``port`` first; with ``RAY_ADDRESS`` set (an existing cluster, whose metrics
    port is its own) plain ``serve run``."""
    if environ.get("RAY_ADDRESS"):
        return [sys.executable, "-m", "ray.serve.scripts", "run", str(config_path)]
    return [
        sys.executable,
        "-m",
        "deployments.serve_run",
        "--metrics-export-port",
        str(port),
        str(config_path),
    ]


def haproxy_env(state_dir: Path) -> dict[str, str]:
    """Environment that switches Ray Serve 2.60 to its HAProxy ingress, privately.

    The flag is read by the controller at import, so it must be in the environment of the
    process that starts Ray (here `serve run`). HAProxy's files default to the shared
    /tmp/haproxy-serve; a private directory keeps this instance off any other
    (keep its path short: the admin socket's path, with a node id appended, must fit 97).
    One HAProxy thread: the default 4 would only compete for this box's 2 cores.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_NBTHREAD": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state_dir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state_dir / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state_dir),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state_dir / "server-state"),
    }


def _http_address(config_path: Path) -> str:
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    http = config.get("http_options") or {}
    return f"http://{http.get('host', '127.0.0.1')}:{http.get('port', 8000)}"


def _ingress_body_limit_bytes(config: dict[str, Any]) -> int:
    """``limits.max_body_bytes`` of the Ingress in a Serve config (the default when unset)."""
    for app in config.get("applications") or []:
        for deployment in app.get("deployments") or []:
            if deployment.get("name") == "Ingress":
                limits = (deployment.get("user_config") or {}).get("limits") or {}
                return LimitsConfig.model_validate(limits).max_body_bytes
    return LimitsConfig().max_body_bytes


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def grpc_env(config: dict[str, Any], environ: dict[str, str]) -> dict[str, str]:
    """Environment that confines Ray's gRPC proxy as far as Ray 2.60 allows.

    Ray reads ``RAY_SERVE_GRPC_MAX_MESSAGE_SIZE`` in its proxy at start (default 2 GiB): capped
    at the Ingress's HTTP body limit, a larger message is refused before any key check. Ray
    binds gRPC to ``[::]`` whatever ``http_options.host`` says (no host option): when HTTP
    binds loopback, ``SOCIALPLAY_GRPC_LOOPBACK_ONLY`` makes the Ingress refuse other hosts.
    An operator's own settings win.
    """
    if not config.get("grpc_options"):
        return {}
    env = {"RAY_SERVE_GRPC_MAX_MESSAGE_SIZE": str(_ingress_body_limit_bytes(config))}
    host = str((config.get("http_options") or {}).get("host", "127.0.0.1"))
    if _is_loopback(host):
        env["SOCIALPLAY_GRPC_LOOPBACK_ONLY"] = "1"
    return {name: value for name, value in env.items() if name not in environ}


def startup_keys(settings: Settings) -> tuple[dict[str, frozenset[str]], str | None]:
    """The keys the replicas will accept, and the one to print: the development key when this
    run generated or reuses one, never a configured key (it is a secret).

    Exits with the replicas' own message when they would refuse to start (no key, no
    ``SOCIALPLAY_HASH_SECRET`` outside development mode).
    """
    try:
        keys = resolve_scoped_keys(settings)
        resolve_hash_secret(settings)
    except (NoApiKeyError, MissingHashSecretError) as exc:
        raise SystemExit(str(exc)) from None
    return keys, (None if settings.scoped_keys() else next(iter(keys)))


def _wait_ready(url: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"serve run exited with code {child.returncode}; see its output above")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if json.load(response).get("status") == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(1.0)
    raise SystemExit(f"the service did not become healthy at {url} in {READY_TIMEOUT_S:.0f} s")


def _models(url: str, operator_key: str | None) -> str:
    """The nodes' models from the detailed health report (needs an operator key)."""
    if operator_key is None:
        return "see GET /api/v1/health with an operator key (OPERATOR_API_KEYS)"
    request = urllib.request.Request(f"{url}/api/v1/health", headers={"X-API-Key": operator_key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            nodes = json.load(response).get("nodes")
    except (urllib.error.URLError, OSError, ValueError):
        return "unknown"
    if not isinstance(nodes, dict):
        return "unknown"
    # Nodes without a model (the recommender) are listed in the report only.
    return ", ".join(
        f"{n}={i.get('name')}@{i.get('version')}" for n, i in nodes.items() if i.get("name")
    )


def _stop(child: subprocess.Popen[bytes]) -> int:
    """Stop ``serve run`` gracefully: SIGINT (its own clean shutdown), then SIGTERM, SIGKILL."""
    if child.poll() is not None:
        return child.returncode or 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        child.send_signal(sig)
        try:
            child.wait(timeout=STOP_TIMEOUT_S)
            return 0
        except subprocess.TimeoutExpired:
            continue
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    return 1


def main(argv: list[str] | None = None) -> int:
    """Start the service and block until Ctrl-C (or until ``serve run`` exits)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="serve_config.yaml", help="Serve config file.")
    parser.add_argument(
        "--ingress",
        choices=("proxy", "haproxy"),
        default=os.environ.get("SOCIALPLAY_INGRESS", "proxy"),
        help="HTTP ingress: Ray's Python proxy, or HAProxy forwarding straight to the Ingress "
        "replica (faster on small nodes; docs/benchmarks.md). Env: SOCIALPLAY_INGRESS.",
    )
    parser.add_argument(
        "--metrics-port",
        default=None,
        help=f"Ray's Prometheus metrics export port (default {DEFAULT_METRICS_PORT}). "
        f"Env: {METRICS_PORT_ENV}.",
    )
    args = parser.parse_args(argv)
    config_path = Path(args.config).resolve()
    port = metrics_port(args.metrics_port, os.environ)
    if not os.environ.get("RAY_ADDRESS"):
        refuse_taken_port(port)

    env = dict(os.environ)
    # Local single-user cluster: Ray's token auth would make the `serve` CLI fail with
    # "Missing authentication token". Production clusters configure a token instead.
    env.setdefault("RAY_AUTH_MODE", "disabled")
    # Absolute, so replicas (whatever their working directory) find the same development key.
    state_dir = Path(env.get("SOCIALPLAY_STATE_DIR", ".socialplay")).resolve()
    env["SOCIALPLAY_STATE_DIR"] = os.environ["SOCIALPLAY_STATE_DIR"] = str(state_dir)
    settings = get_settings()
    keys, dev_key = startup_keys(settings)
    operator_key = next((k for k, scopes in keys.items() if OPERATOR_SCOPE in scopes), None)
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    env.update(grpc_env(config, env))
    if config.get("grpc_options"):
        print(
            "gRPC: messages over "
            f"{env.get('RAY_SERVE_GRPC_MAX_MESSAGE_SIZE', 'the configured')} bytes refused; Ray "
            "listens for gRPC on every interface"
            + (
                ", other hosts refused (SOCIALPLAY_GRPC_LOOPBACK_ONLY=1)"
                if env.get("SOCIALPLAY_GRPC_LOOPBACK_ONLY") == "1"
                else "; no TLS: firewall the port or terminate TLS in front (docs/operations.md)"
            ),
            flush=True,
        )
    if args.ingress == "haproxy":
        # Short path: HAProxy's admin socket path (with a node id appended) must fit 97 bytes.
        env.update(haproxy_env(Path(tempfile.mkdtemp(prefix="sph-", dir="/tmp"))))
        # Ray Serve's throughput mode (user code on the replica's main loop, gRPC between
        # handles) serves the cheap routes faster behind HAProxy: docs/benchmarks.md, "gRPC
        # against HTTP, and Ray Serve's throughput mode".
        # An operator's own setting wins (RAY_SERVE_THROUGHPUT_OPTIMIZED=0 turns it off).
        env.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        print(
            "HTTP ingress: HAProxy (RAY_SERVE_ENABLE_HA_PROXY=1, "
            f"RAY_SERVE_THROUGHPUT_OPTIMIZED={env['RAY_SERVE_THROUGHPUT_OPTIMIZED']})",
            flush=True,
        )

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Explicit handlers: a launcher started from a script may inherit SIGINT as ignored,
    # and process managers stop services with SIGTERM.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)

    child = subprocess.Popen(
        serve_run_command(config_path, port, env),
        env=env,
        start_new_session=True,
    )
    url = _http_address(config_path)
    try:
        _wait_ready(url, child)
        models = _models(url, operator_key)
        shown = dev_key or "$API_KEY"
        print("\n" + "=" * 72)
        print(f"SocialPlay AI is up at {url}   (API docs: {url}/docs)")
        if dev_key is not None:
            print(f"Development API key (every scope): {dev_key}")
        else:
            print("API keys: the configured ones (API_KEYS, MODERATOR_API_KEYS, ...; not shown)")
        print(f"Models: {models}")
        if env.get("RAY_ADDRESS"):
            print("Metrics (Prometheus): on the Ray cluster's own metrics export port")
        else:
            print(f"Metrics (Prometheus): http://127.0.0.1:{port}/metrics (ours: ray_socialplay_*)")
        print(
            f'Try: curl -s -X POST {url}/api/v1/moderation/text -H "X-API-Key: {shown}" '
            "-H 'Content-Type: application/json' -d '{\"text\": \"have a lovely day\"}'"
        )
        print("Press Ctrl-C to stop.")
        print("=" * 72 + "\n", flush=True)
        child.wait()
    except KeyboardInterrupt:
        print("\nStopping SocialPlay AI ...", flush=True)
    except SystemExit as exc:
        _stop(child)
        raise exc
    return _stop(child)


if __name__ == "__main__":
    sys.exit(main())
