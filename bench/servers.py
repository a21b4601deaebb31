"""Start and stop the servers under test: our Ray Serve graph and the FastAPI baseline.

Each server runs as a child process in its own session (so a signal meant for it never hits
the benchmark, and the benchmark's Ctrl-C is forwarded on purpose), with its output in a log
file. Start-up waits, bounded, for ``GET /health`` to say ok; stopping is SIGINT (graceful),
then SIGTERM, then SIGKILL for the process group and for every process ever seen in the tree.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench.procs import ProcessTree

# Re-exported: the bench scripts take it from here with the other server helpers.
from deployments.launch import haproxy_env as haproxy_env

REPO_ROOT = Path(__file__).resolve().parent.parent
HEALTH_POLL_S = 1.0
STOP_WAIT_S = 30.0
LOG_TAIL_CHARS = 3000


class ServerStartError(RuntimeError):
    """A server exited or did not become healthy in time (the message has its log tail)."""


class Server:
    """A child process serving HTTP on 127.0.0.1:`port`."""

    def __init__(
        self,
        name: str,
        command: list[str],
        port: int,
        env: Mapping[str, str],
        log_path: Path,
        ready_timeout_s: float,
        source_dir: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.source_dir = source_dir
        self.command = command
        self.port = port
        self.env = dict(env)
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.tree: ProcessTree | None = None
        self.startup_s: float | None = None
        self.health: dict[str, Any] = {}
        # Scratch directories removed once the server is stopped (e.g. Ray's temp dir).
        self.cleanup_paths: list[Path] = []

    @property
    def base_url(self) -> str:
        """Loopback URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the child and wait for a healthy ``/health``.

        Raises:
            ServerStartError: the port is taken, the child exited, or it stayed unhealthy for
                `ready_timeout_s`; the child and its processes are stopped first.
        """
        if _port_answers(self.port):
            raise ServerStartError(
                f"{self.name}: something already answers on 127.0.0.1:{self.port}; "
                "stop it or pick another port (--serve-port / --baseline-port)"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.source_dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.tree = ProcessTree(self.process.pid)
        try:
            self.health = self._wait_healthy(started + self.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def _wait_healthy(self, deadline: float) -> dict[str, Any]:
        assert self.process is not None and self.tree is not None
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            self.tree.refresh()
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {self.process.returncode} before it was "
                    f"healthy; log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=5) as response:
                    health: dict[str, Any] = json.load(response)
                if health.get("status") == "ok":
                    return health
                last_error = f"status {health.get('status')!r}"
            except urllib.error.HTTPError as exc:
                last_error = f"HTTP {exc.code}"
                # 404/503 while the proxy has no route or replica yet; other 4xx come from
                # the app itself and will not go away by waiting.
                if 400 <= exc.code < 500 and exc.code not in (404, 408, 429):
                    raise ServerStartError(
                        f"{self.name}: GET /health answered HTTP {exc.code}; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    ) from exc
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(HEALTH_POLL_S)
        raise ServerStartError(
            f"{self.name} was not healthy within {self.ready_timeout_s:.0f} s ({last_error}); "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self) -> str:
        """The end of the server's log, for error messages."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def stop(self) -> list[str]:
        """Stop gracefully, escalating; returns labels of processes that had to be killed."""
        process = self.process
        if process is None:
            return []
        if self.tree is not None:
            self.tree.refresh()
        for sig in (signal.SIGINT, signal.SIGTERM):
            if process.poll() is not None:
                break
            process.send_signal(sig)
            try:
                process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                continue
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=STOP_WAIT_S)
        killed = self.tree.kill_leftovers() if self.tree is not None else []
        self.process = None
        for path in self.cleanup_paths:
            shutil.rmtree(path, ignore_errors=True)
        return killed


def _port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ProbedServer(Server):
    """A peer server that is ready when a real request to `probe_route` answers as expected.

    Subclasses set `probe_route` and `probe_body` and say in `probe_ok` what a good answer
    is (for the embedding peers: one 384-float vector).
    """

    probe_route = "/"
    probe_body: Mapping[str, Any] = {}

    def probe_ok(self, answer: Any) -> bool:
        """Whether `answer` (the parsed JSON reply) shows a working model."""
        raise NotImplementedError

    def _wait_healthy(self, deadline: float) -> dict[str, Any]:
        assert self.process is not None and self.tree is not None
        last_error = "no answer yet"
        body = json.dumps(dict(self.probe_body)).encode("utf-8")
        while time.monotonic() < deadline:
            self.tree.refresh()
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {self.process.returncode} before it was "
                    f"ready; log {self.log_path}:\n{self.log_tail()}"
                )
            request = urllib.request.Request(
                self.base_url + self.probe_route,
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.load(response)
                if self.probe_ok(answer):
                    return {"status": "ok"}
                last_error = f"unexpected answer {str(answer)[:200]}"
            except urllib.error.HTTPError as exc:
                last_error = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(1.0)
        raise ServerStartError(
            f"{self.name} was not ready within {self.ready_timeout_s:.0f} s ({last_error}); "
            f"log {self.log_path}:\n{self.log_tail()}"
        )


# The torch the project pins (the local CPU wheel); peers get the same build.
PEER_TORCH_VERSION = "2.13.0"


def build_peer_venv(
    venv_dir: Path, label: str, packages: list[str], timeout_s: float = 1800
) -> None:
    """Create `venv_dir` and install a peer server's `packages` into it, torch first.

    torch goes in first and alone, pinned to the version this project uses, so that the
    later installs find it satisfied and never pull a different (CUDA) build.

    Raises:
        RuntimeError: venv creation or an install failed (the step and pip's error named).
    """
    pip = str(venv_dir / "bin" / "pip")
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    steps = [
        [str(base_python), "-m", "venv", str(venv_dir)],
        [pip, "install", "-q", f"torch=={PEER_TORCH_VERSION}"],
        [pip, "install", "-q", *packages],
    ]
    for step in steps:
        print(f"[{label} setup] {' '.join(step[:4])} ...", file=sys.stderr, flush=True)
        completed = subprocess.run(
            step, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"{label} venv step {' '.join(step[:4])} failed: {completed.stderr[-1500:]}"
            )


def peer_env(venv_dir: Path, **extra: str) -> dict[str, str]:
    """This environment with `venv_dir` first on PATH, without PYTHONPATH, plus `extra`."""
    env = {
        **os.environ,
        "PATH": f"{venv_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv_dir),
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }
    # The peer runs its own packages, never the code under test.
    env.pop("PYTHONPATH", None)
    return env


# Ray-wide settings a variant can add (``INGRESS+OPTION:COALESCE``), as environment variables
# of the `serve run` process: the local Ray instance it starts, and every worker, inherit them.
VARIANT_ENV_OPTIONS: dict[str, dict[str, str]] = {
    # Ray Serve's own throughput mode: user code and the router on the replica's main event
    # loop, gRPC between handles, buffered request-path logs.
    "tput": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    # OpenMP threads sleep at once after a parallel region instead of spinning for a while:
    # spinning model threads take cycles the front and HAProxy need between batches.
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    # Ray's core metrics and task events every 60 s instead of every 10 s / 1 s.
    "mi60": {
        "RAY_metrics_report_interval_ms": "60000",
        "RAY_task_events_report_interval_ms": "60000",
    },
}


def ray_ingress_entry(entry: str) -> tuple[str, dict[str, str]]:
    """``INGRESS[+OPTION...]`` (e.g. ``haproxy+tput``) -> (ingress, the env its options add).

    Raises:
        ValueError: Not proxy / haproxy, or an option not in `VARIANT_ENV_OPTIONS`.
    """
    ingress, *options = entry.strip().split("+")
    unknown = set(options) - set(VARIANT_ENV_OPTIONS)
    if ingress not in ("proxy", "haproxy") or unknown:
        raise ValueError(
            f"{entry!r}: use proxy or haproxy, optionally with "
            f"+{'/+'.join(sorted(VARIANT_ENV_OPTIONS))} (Ray-wide settings), e.g. haproxy+tput"
        )
    env: dict[str, str] = {}
    for option in options:
        env.update(VARIANT_ENV_OPTIONS[option])
    return ingress, env


def _child_env(api_key: str, source_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            # The code under test comes first on every process's path (Ray workers too),
            # ahead of the editable install of the working tree.
            "PYTHONPATH": str(source_dir),
            "API_KEYS": api_key,
            # The bench's key also reads the detailed health report (/api/v1/health).
            "OPERATOR_API_KEYS": api_key,
            # Required outside development mode (user-id hashes); a bench needs no private one.
            "SOCIALPLAY_HASH_SECRET": "bench-hash-secret-not-private",
            "SOCIALPLAY_DEV_MODE": "0",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def serve_config(
    base_config_path: Path,
    port: int,
    app_args: Mapping[str, Any] | None = None,
    deployment_overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """`base_config_path` with its HTTP port changed and per-deployment fields overridden.

    `deployment_overrides` maps a deployment name to fields merged into that deployment
    (``ray_actor_options`` and ``user_config`` are merged one level deeper). With `app_args`
    (a graph of the workload's own), only the deployments named in `deployment_overrides`
    are kept: Serve refuses a config entry for a deployment the graph does not build.
    """
    config = copy.deepcopy(yaml.safe_load(base_config_path.read_text(encoding="utf-8")))
    config.setdefault("http_options", {})["port"] = port
    config["http_options"]["host"] = "127.0.0.1"
    (application,) = config["applications"]
    if app_args is not None:
        application["args"] = copy.deepcopy(dict(app_args))
        application["deployments"] = [
            deployment
            for deployment in application.get("deployments", [])
            if deployment["name"] in (deployment_overrides or {})
        ]
    for deployment in application.get("deployments", []):
        override = (deployment_overrides or {}).get(deployment["name"], {})
        for key, value in override.items():
            if key in ("ray_actor_options", "user_config") and isinstance(value, Mapping):
                merged = dict(deployment.get(key) or {})
                merged.update(copy.deepcopy(dict(value)))
                deployment[key] = merged
            else:
                deployment[key] = copy.deepcopy(value)
    return config


# `serve run` only calls ray.init when Ray is not initialised yet, so this one wins.
_SERVE_RUN_WITHOUT_DASHBOARD = (
    "import sys, ray\n"
    "from ray.serve._private.constants import SERVE_NAMESPACE\n"
    "from ray.serve.scripts import cli\n"
    "ray.init(include_dashboard=False, namespace=SERVE_NAMESPACE)\n"
    "cli(['run', sys.argv[1]])\n"
)


def ray_serve_server(
    config: Mapping[str, Any],
    api_key: str,
    work_dir: Path,
    source_dir: Path = REPO_ROOT,
    ready_timeout_s: float = 240.0,
    dashboard: bool = True,
) -> Server:
    """``serve run`` of `config` on a fresh, private local Ray instance, from `source_dir`.

    ``dashboard=False`` starts that instance with ``ray.init(include_dashboard=False)`` in
    the same process before handing over to ``serve run`` (which then reuses it): the
    setting operators get with ``ray start --head --include-dashboard=false``.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "serve_config.bench.yaml"
    config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    env = _child_env(api_key, source_dir)
    env["RAY_AUTH_MODE"] = "disabled"
    # "local": always start a new Ray instance, never attach to a developer's or a test's.
    env["RAY_ADDRESS"] = "local"
    # A short private temp dir (Unix socket paths must stay under 107 bytes).
    ray_tmp_dir = tempfile.mkdtemp(prefix="spb-", dir="/tmp")
    env["RAY_TMPDIR"] = ray_tmp_dir
    command = [sys.executable, "-m", "ray.serve.scripts", "run", str(config_path)]
    if not dashboard:
        command = [sys.executable, "-c", _SERVE_RUN_WITHOUT_DASHBOARD, str(config_path)]
    port = int(config["http_options"]["port"])
    server = Server(
        "ray-serve", command, port, env, work_dir / "serve.log", ready_timeout_s, source_dir
    )
    server.cleanup_paths.append(Path(ray_tmp_dir))
    return server


def baseline_server(
    kind: str,
    path: str | None,
    port: int,
    api_key: str,
    work_dir: Path,
    source_dir: Path = REPO_ROOT,
    ready_timeout_s: float = 120.0,
) -> Server:
    """The FastAPI + uvicorn baseline (``bench.baseline_fastapi``) on `port`."""
    command = [sys.executable, "-m", "bench.baseline_fastapi", "--port", str(port), "--kind", kind]
    if path is not None:
        command += ["--path", path]
    return Server(
        "fastapi-baseline",
        command,
        port,
        _child_env(api_key, source_dir),
        work_dir / "baseline.log",
        ready_timeout_s,
        source_dir,
    )


def snapshot_source(ref: str, dest: Path) -> str:
    """Extract `ref` of the repository into `dest` (``git archive``), plus the current bench/.

    The working tree and the repository are only read. Returns the full commit id.

    Raises:
        RuntimeError: `ref` is not a commit or git failed.
    """
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if commit.returncode != 0:
        raise RuntimeError(f"--source {ref!r} is not a commit: {commit.stderr.strip()}")
    commit_id = commit.stdout.strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit_id],
        cwd=REPO_ROOT, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {commit_id} failed: {archive.stderr.decode()[-500:]}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    bench_dest = dest / "bench"
    shutil.rmtree(bench_dest, ignore_errors=True)
    shutil.copytree(
        REPO_ROOT / "bench",
        bench_dest,
        ignore=shutil.ignore_patterns("results", ".venv-*", "__pycache__"),
    )
    return commit_id
