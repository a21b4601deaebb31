"""``make serve``: start Ray locally, deploy ``serve_config.yaml``, print the URL and a key.

Runs ``serve run`` as a child in its own process group, so that Ctrl-C here reaches it once, as
a deliberate SIGINT (its graceful shutdown), whatever the terminal or process manager did.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from configs.settings import get_settings, resolve_api_keys

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


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


def _wait_ready(url: str, child: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"serve run exited with code {child.returncode}; see its output above")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                health: dict[str, object] = json.load(response)
                if health.get("status") == "ok":
                    return health
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(1.0)
    raise SystemExit(f"the service did not become healthy at {url} in {READY_TIMEOUT_S:.0f} s")


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
    args = parser.parse_args(argv)
    config_path = Path(args.config).resolve()

    env = dict(os.environ)
    # Local single-user cluster: Ray's token auth would make the `serve` CLI fail with
    # "Missing authentication token". Production clusters configure a token instead.
    env.setdefault("RAY_AUTH_MODE", "disabled")
    # Absolute, so replicas (whatever their working directory) find the same development key.
    state_dir = Path(env.get("SOCIALPLAY_STATE_DIR", ".socialplay")).resolve()
    env["SOCIALPLAY_STATE_DIR"] = os.environ["SOCIALPLAY_STATE_DIR"] = str(state_dir)
    key = resolve_api_keys(get_settings())[0]
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
        [sys.executable, "-m", "ray.serve.scripts", "run", str(config_path)],
        env=env,
        start_new_session=True,
    )
    url = _http_address(config_path)
    try:
        health = _wait_ready(url, child)
        nodes = health.get("nodes")
        models = (
            ", ".join(
                f"{n}={i.get('name')}@{i.get('version')}"
                for n, i in nodes.items()
                if i.get("name")  # nodes without a model (the recommender) are listed in /health
            )
            if isinstance(nodes, dict)
            else "unknown"
        )
        print("\n" + "=" * 72)
        print(f"SocialPlay AI is up at {url}   (API docs: {url}/docs)")
        print(f"API key: {key}")
        print(f"Models: {models}")
        print(
            f"Try: curl -s -X POST {url}/api/v1/moderation/text -H 'X-API-Key: {key}' "
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
