"""End-to-end benchmark: ``python -m bench.run_all`` (``make bench``).

For each workload, in one invocation: the model called directly at several batch sizes
(the offline ceiling on these cores), the FastAPI baseline of the design document, and our
Ray Serve graph started with ``serve run`` from a copy of ``serve_config.yaml``. wrk drives
both servers on loopback with the same rotating posts; each Ray Serve server is then also
measured on the bulk route ``POST /api/v1/moderation/batch`` (``--batch-texts`` posts per
request, largest connection count). Results go to ``bench/results/`` and, for full runs, to
the generated block of ``docs/benchmarks.md``.

    python -m bench.run_all                       # full: 20 s runs, 8 and 32 connections
    python -m bench.run_all --quick               # smoke check: 5 s runs, 8 connections
    python -m bench.run_all --workloads w2 --duration-s 15
    python -m bench.run_all --workloads w2 --torchserve   # W2 also on TorchServe

With ``--torchserve``, a workload whose model TorchServe can serve (W2) is also measured on
TorchServe (``bench/torchserve_runner.py``) serving the same checkpoint, with server-side
batching set like the Ray node's, on the same posts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import loadgen, procs, report
from bench.plot import plot_results
from bench.posts import (
    DEFAULT_NUM_POSTS,
    generate_posts,
    write_batch_request_bodies,
    write_request_bodies,
)
from bench.servers import (
    REPO_ROOT,
    Server,
    ServerStartError,
    baseline_server,
    haproxy_env,
    ray_ingress_entry,
    ray_serve_server,
    serve_config,
    snapshot_source,
)
from bench.torchserve_runner import TORCHSERVE_VERSION, model_kind, torchserve_server

ROUTE = "/api/v1/moderation/text"
# The bulk route measured after the single-text runs on Ray Serve (--batch-texts).
BATCH_ROUTE = "/api/v1/moderation/batch"
OFFLINE_TIMEOUT_S = 300.0
# A run during which other processes used more than this many cores is rerun once.
DISTURBED_OTHER_CORES = 0.3


@dataclass(frozen=True)
class Workload:
    """One model behind the same route, and how each setup is configured for it."""

    name: str
    title: str
    description: str
    kind: str
    offline_batch_sizes: tuple[int, ...]
    offline_budget_s: float
    request_timeout_s: float
    app_args: dict[str, Any] | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The `bench.torchserve_runner` kind that serves this model (--torchserve); None: none.
    torchserve_kind: str | None = None


def _workloads(checkpoint_dir: Path) -> dict[str, Workload]:
    w2_timeouts = {"moderation_s": 30.0, "sentiment_s": 5.0, "health_s": 2.0}
    return {
        "w1": Workload(
            name="w1",
            title="per-request overhead (embedded alt-profanity-check)",
            description=(
                "`POST /api/v1/moderation/text` on the embedded default model, whose cost is "
                "tiny: this measures what the serving path itself costs per request. Ray Serve "
                "runs `serve_config.yaml` as shipped (port changed) except the result cache, "
                "which is off: after the warm-up every one of the rotating posts would be a "
                "cache hit, and the model would never run."
            ),
            kind="profanity",
            offline_batch_sizes=(1, 8, 64, 256, 1024),
            offline_budget_s=1.0,
            request_timeout_s=10.0,
            overrides={"TextModeration": {"user_config": {"cache": {"enabled": False}}}},
        ),
        "w2": Workload(
            name="w2",
            title="model-bound (bert-base-sized transformer, random weights)",
            description=(
                "The transformer moderation path on a bert-base-sized multi-label checkpoint "
                "with RANDOM weights (toxic-bert's shape and cost, meaningless scores), on "
                "CPU. Model-bound: this is where request batching has to pay off. Ray Serve "
                "is tuned through `user_config` / `ray_actor_options` (see settings below); "
                "the ingress timeout to the node is raised to 30 s so that no answer comes "
                "from the fallback model and every figure is the transformer's."
            ),
            kind="transformer",
            offline_batch_sizes=(1, 4, 8, 16, 32),
            offline_budget_s=3.0,
            request_timeout_s=30.0,
            app_args={
                "moderation_model": {
                    "kind": "transformer",
                    "path": str(checkpoint_dir),
                    "device": "cpu",
                },
                "sentiment_model": {"kind": "vader"},
            },
            overrides={
                "Ingress": {
                    "ray_actor_options": {"num_cpus": 0.25},
                    "user_config": {"timeouts": w2_timeouts},
                },
                "TextModeration": {
                    "max_ongoing_requests": 64,
                    # 1.5 of Ray's 2 logical CPUs; Ray would then set OMP_NUM_THREADS=1
                    # (floor), so give torch both cores explicitly, as offline.
                    "ray_actor_options": {
                        "num_cpus": 1.5,
                        "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "2"}},
                    },
                    "user_config": {
                        "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01},
                        # Off, as in W1: cached answers would hide the model's cost.
                        "cache": {"enabled": False},
                    },
                },
                "Sentiment": {"ray_actor_options": {"num_cpus": 0.25}},
            },
            torchserve_kind="classifier",
        ),
    }


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine_info() -> dict[str, Any]:
    """CPU count and model, RAM, and the versions that matter."""
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    ram_kib = 0
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemTotal:"):
            ram_kib = int(line.split()[1])
    from importlib import metadata

    wrk_version = (
        subprocess.run(
            [loadgen.wrk_path(), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        .stdout.split(" [")[0]
        .strip()
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "ram_gib": ram_kib / 1024 / 1024,
        "python": platform.python_version(),
        "ray": metadata.version("ray"),
        "torch": metadata.version("torch"),
        "wrk": wrk_version,
    }


def _run_child_json(
    command: list[str], timeout_s: float, source_dir: Path = REPO_ROOT
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(source_dir), "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(
        command,
        cwd=source_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"{shlex.join(command[1:4])} failed with code {completed.returncode}: "
            f"{completed.stderr.strip()[-1500:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure_offline(
    workload: Workload, bodies: Path, checkpoint: Path | None, source_dir: Path
) -> dict[str, Any]:
    """Offline ceiling in a child process; rerun once when other load disturbed it."""
    command = [
        sys.executable, "-m", "bench.offline", "measure", "--kind", workload.kind,
        "--bodies", str(bodies), "--budget-s", str(workload.offline_budget_s),
        "--batch-sizes", ",".join(str(b) for b in workload.offline_batch_sizes),
    ]  # fmt: skip
    if checkpoint is not None:
        command += ["--path", str(checkpoint)]
    result: dict[str, Any] = {}
    for attempt in (1, 2):
        busy_before, started = procs.machine_busy_s(), time.monotonic()
        import resource

        own_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = _run_child_json(command, OFFLINE_TIMEOUT_S, source_dir)
        own_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall_s = time.monotonic() - started
        own_s = (own_after.ru_utime - own_before.ru_utime) + (
            own_after.ru_stime - own_before.ru_stime
        )
        result["other_cores"] = max(0.0, (procs.machine_busy_s() - busy_before - own_s) / wall_s)
        result["attempt"] = attempt
        if result["other_cores"] <= DISTURBED_OTHER_CORES:
            break
        _log(f"offline run disturbed ({result['other_cores']:.2f} cores of other load); rerun")
    return result


def measure_server(
    server: Server,
    bodies: Path,
    api_key: str,
    connections: list[int],
    duration_s: float,
    warmup_s: float,
    request_timeout_s: float,
    route: str = ROUTE,
    *,
    batch_bodies: Path | None = None,
    texts_per_request: int = 0,
    batch_route: str = BATCH_ROUTE,
) -> dict[str, Any]:
    """Start `server`, warm it up, run wrk at each connection count on `route`, stop it.

    With `batch_bodies` and `texts_per_request` > 0, the same running server is then also
    measured on `batch_route` at the largest connection count (``outcome["batch_runs"]``:
    the fields of a normal run plus ``route``, ``texts_per_request`` and ``texts_per_s``;
    there ``degraded`` counts responses with at least one degraded answer). A failed bulk run
    is recorded as ``outcome["batch_error"]`` and keeps the other runs.
    """
    outcome: dict[str, Any] = {"runs": []}
    _log(f"starting {server.name} on {server.base_url}")
    server.start()
    try:
        outcome["startup_s"] = server.startup_s
        outcome["health"] = server.health
        _log(f"{server.name} healthy after {server.startup_s:.1f} s; warm-up {warmup_s:.0f} s")
        loadgen.run_wrk(
            server.base_url, route, bodies, api_key, max(connections), warmup_s,
            request_timeout_s=request_timeout_s,
        )  # fmt: skip
        for count in connections:
            run = _undisturbed_run(
                server, bodies, api_key, count, duration_s, request_timeout_s, route
            )
            outcome["runs"].append(run)
            _log_run(server.name, run)
        if batch_bodies is not None and texts_per_request > 0:
            outcome.update(
                _measure_batch(
                    server, batch_bodies, texts_per_request, batch_route, api_key,
                    max(connections), duration_s, warmup_s, request_timeout_s,
                )
            )  # fmt: skip
    finally:
        killed = server.stop()
        outcome["killed_leftovers"] = killed
        if killed:
            _log(f"{server.name}: had to kill leftover processes: {', '.join(killed)}")
    return outcome


def _measure_batch(
    server: Server,
    batch_bodies: Path,
    texts_per_request: int,
    batch_route: str,
    api_key: str,
    connections: int,
    duration_s: float,
    warmup_s: float,
    request_timeout_s: float,
) -> dict[str, Any]:
    # Its own warm-up: the bulk route sends the node batches of a new size, and the first of
    # those (tokenizer padding, allocations) should not count.
    _log(f"{server.name}: bulk route {batch_route}, {texts_per_request} texts per request")
    try:
        loadgen.run_wrk(
            server.base_url, batch_route, batch_bodies, api_key, connections, warmup_s,
            request_timeout_s=request_timeout_s,
        )  # fmt: skip
        run = _undisturbed_run(
            server, batch_bodies, api_key, connections, duration_s, request_timeout_s,
            batch_route,
        )  # fmt: skip
    except loadgen.LoadGenError as exc:
        # The single-text runs above are still valid; only the bulk figure is missing.
        _log(f"{server.name} bulk route failed: {exc}")
        return {"batch_runs": [], "batch_error": str(exc).splitlines()[0]}
    run = {
        **run,
        "route": batch_route,
        "texts_per_request": texts_per_request,
        "texts_per_s": run["ok_per_s"] * texts_per_request,
    }
    _log_run(server.name, run)
    return {"batch_runs": [run]}


def _undisturbed_run(
    server: Server,
    bodies: Path,
    api_key: str,
    connections: int,
    duration_s: float,
    request_timeout_s: float,
    route: str,
) -> dict[str, Any]:
    run = _measured_run(server, bodies, api_key, connections, duration_s, request_timeout_s, route)
    if run["other_cores"] > DISTURBED_OTHER_CORES:
        _log(f"run disturbed ({run['other_cores']:.2f} cores of other load); rerun once")
        run = _measured_run(
            server, bodies, api_key, connections, duration_s, request_timeout_s, route
        )
    return run


def _log_run(server_name: str, run: dict[str, Any]) -> None:
    texts = f", {run['texts_per_s']:.1f} texts/s" if "texts_per_s" in run else ""
    _log(
        f"{server_name} c={run['connections']}: {run['ok_per_s']:.1f} req/s{texts}, "
        f"p50 {run['latency_p50_ms']:.1f} ms, p99 {run['latency_p99_ms']:.1f} ms, "
        f"errors {run['errors']}, degraded {run['degraded']}, "
        f"RSS {run['memory']['rss_mb']:.0f} MB, other load {run['other_cores']:.2f}"
    )


def _measured_run(
    server: Server,
    bodies: Path,
    api_key: str,
    connections: int,
    duration_s: float,
    request_timeout_s: float,
    route: str = ROUTE,
) -> dict[str, Any]:
    assert server.tree is not None
    tree_before = server.tree.cpu_times_s()
    busy_before, started = procs.machine_busy_s(), time.monotonic()
    result = loadgen.run_wrk(
        server.base_url, route, bodies, api_key, connections, duration_s,
        request_timeout_s=request_timeout_s,
    )  # fmt: skip
    wall_s = time.monotonic() - started
    busy_s = procs.machine_busy_s() - busy_before
    tree_after = server.tree.cpu_times_s()
    memory = server.tree.memory()
    cores = server.tree.cores_by_label(tree_before, tree_after, wall_s)
    server_cores = sum(cores.values())
    wrk_cores = result.wrk_cpu_s / wall_s
    return {
        **result.as_dict(),
        "memory": memory,
        "cores_by_process": cores,
        "server_cores": server_cores,
        "wrk_cores": wrk_cores,
        "other_cores": max(0.0, busy_s / wall_s - server_cores - wrk_cores),
    }


def torchserve_settings(workload: Workload) -> dict[str, int]:
    """`torchserve_server` batching arguments matching the workload's TextModeration node.

    Batch size, batch wait and torch threads are read from the node's Ray overrides, so both
    servers batch alike; one worker, as the node has one replica.
    """
    node = workload.overrides["TextModeration"]
    batching = node["user_config"]["batching"]
    return {
        "batch_size": int(batching["max_batch_size"]),
        "max_batch_delay_ms": round(float(batching["batch_wait_timeout_s"]) * 1000),
        "workers": 1,
        "torch_threads": int(
            node["ray_actor_options"]["runtime_env"]["env_vars"]["OMP_NUM_THREADS"]
        ),
    }


def measure_torchserve(
    workload: Workload,
    args: argparse.Namespace,
    bodies: Path,
    checkpoint: Path | None,
    api_key: str,
    work_dir: Path,
) -> dict[str, Any]:
    """TorchServe serving `checkpoint` with `torchserve_settings`, measured by `measure_server`.

    The same posts, connection counts and timeouts as the other servers, on TorchServe's own
    route (the API key header is sent and ignored). A TorchServe that could not be prepared
    (its venv, java, the archive) or started is recorded as the row's ``error``, and the run
    goes on.
    """
    assert workload.torchserve_kind is not None
    settings = torchserve_settings(workload)
    label = (
        f"TorchServe {TORCHSERVE_VERSION} (batch {settings['batch_size']}, "
        f"{settings['max_batch_delay_ms']} ms, {settings['workers']} worker)"
    )
    summary = (
        f"bench/torchserve_runner.py {workload.torchserve_kind} handler on the same checkpoint "
        f"(one window per post, as our moderator, sigmoid per label); "
        f"{json.dumps(settings, separators=(',', ':'))}"
    )
    try:
        server = torchserve_server(
            work_dir / "torchserve", args.torchserve_port, checkpoint,
            kind=workload.torchserve_kind, **settings,
        )  # fmt: skip
        outcome = measure_server(
            server, bodies, api_key, args.connections, args.duration_s, args.warmup_s,
            workload.request_timeout_s, model_kind(workload.torchserve_kind).route,
        )  # fmt: skip
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        # RuntimeError includes ServerStartError and LoadGenError; OSError a missing file;
        # SubprocessError a pip or archiver step that timed out.
        _log(f"{workload.name} torchserve failed: {exc}")
        outcome = {"error": str(exc).splitlines()[0]}
    return {"label": label, "settings": summary, **outcome}


def _settings_summary(workload: Workload) -> str:
    if not workload.overrides:
        return "serve_config.yaml as shipped"
    parts = []
    for name, fields in workload.overrides.items():
        parts.append(f"{name} {json.dumps(fields, separators=(',', ':'))}")
    return "; ".join(parts)


def _max_batch_texts(config: dict[str, Any]) -> int | None:
    """The Ingress's ``limits.max_batch_texts`` in a serve config; None when not set there."""
    for application in config.get("applications", []):
        for deployment in application.get("deployments", []):
            if deployment.get("name") == "Ingress":
                limits = (deployment.get("user_config") or {}).get("limits") or {}
                limit = limits.get("max_batch_texts")
                return int(limit) if limit is not None else None
    return None


def run_workload(
    workload: Workload,
    args: argparse.Namespace,
    bodies: Path,
    checkpoint: Path | None,
    api_key: str,
    run_dir: Path,
    *,
    batch_bodies: Path | None = None,
) -> dict[str, Any]:
    """Offline ceiling, FastAPI baseline and Ray Serve for one workload (and TorchServe).

    With `batch_bodies` (``args.batch_texts`` texts per line), each Ray Serve server is also
    measured on the bulk route before it is stopped. With ``args.torchserve``, a workload that
    has a `Workload.torchserve_kind` is then measured on TorchServe too (`measure_torchserve`).
    """
    _log(f"{workload.name}: offline ceiling (batch sizes {workload.offline_batch_sizes})")
    offline = measure_offline(workload, bodies, checkpoint, args.source_dir)
    best = offline["best"]
    _log(f"{workload.name}: best {best['texts_per_s']:.1f} texts/s at batch {best['batch_size']}")
    result: dict[str, Any] = {
        "title": workload.title,
        "description": workload.description,
        "offline": offline,
        "servers": {},
    }
    work_dir = run_dir / workload.name
    servers = [
        (
            "fastapi-baseline",
            "FastAPI + uvicorn baseline (1 process, 1 call per request)",
            "one uvicorn worker, async route calling the model inline",
            baseline_server(
                workload.kind, str(checkpoint) if checkpoint else None,
                args.baseline_port, api_key, work_dir, args.source_dir,
            ),
        ),
    ]  # fmt: skip
    overrides = {name: dict(fields) for name, fields in workload.overrides.items()}
    settings_summary = _settings_summary(workload)
    if args.ingress_replicas is not None:
        overrides.setdefault("Ingress", {})["num_replicas"] = args.ingress_replicas
        settings_summary += f"; Ingress num_replicas {args.ingress_replicas}"
    if not args.dashboard:
        settings_summary += "; Ray started without its dashboard"
    ray_config = serve_config(
        args.source_dir / "serve_config.yaml",
        args.serve_port,
        workload.app_args,
        overrides,
    )
    batch_limit = _max_batch_texts(ray_config)
    batch_skipped: str | None = None
    if batch_bodies is not None and batch_limit is not None and args.batch_texts > batch_limit:
        # Every request would be refused (422); say so instead of measuring errors.
        batch_skipped = (
            f"not measured: --batch-texts {args.batch_texts} is above the Ingress's "
            f"max_batch_texts {batch_limit}"
        )
        _log(f"{workload.name}: bulk route {batch_skipped}")
        batch_bodies = None
    for entry in args.ray_ingress:
        ingress, ray_env = ray_ingress_entry(entry)
        server = ray_serve_server(
            ray_config,
            api_key,
            work_dir / f"ray-{entry}",
            args.source_dir,
            dashboard=args.dashboard,
        )
        server.env.update(ray_env)
        if ingress == "haproxy":
            state_dir = Path(tempfile.mkdtemp(prefix="sph-", dir="/tmp"))
            server.env.update(haproxy_env(state_dir))
            server.cleanup_paths.append(state_dir)
        key = "ray-serve" if entry == "proxy" else f"ray-serve-{entry}"
        label = f"Ray Serve graph ({entry} → Ingress → TextModeration)"
        if not args.dashboard:
            key, label = key + "-no-dashboard", label[:-1] + ", no dashboard)"
        servers.append((key, label, settings_summary, server))
    for key, label, settings, server in servers:
        # Only our service has the bulk routes; the baseline serves the single-text route.
        server_batch_bodies = batch_bodies if key.startswith("ray-serve") else None
        try:
            outcome = measure_server(
                server, bodies, api_key, args.connections, args.duration_s, args.warmup_s,
                workload.request_timeout_s,
                batch_bodies=server_batch_bodies, texts_per_request=args.batch_texts,
            )  # fmt: skip
        except (ServerStartError, loadgen.LoadGenError) as exc:
            _log(f"{workload.name} {key} failed: {exc}")
            outcome = {"error": str(exc).splitlines()[0]}
        if batch_skipped and key.startswith("ray-serve") and "error" not in outcome:
            outcome.update({"batch_runs": [], "batch_error": batch_skipped})
        result["servers"][key] = {"label": label, "settings": settings, **outcome}
    if args.torchserve and workload.torchserve_kind is not None:
        result["servers"]["torchserve"] = measure_torchserve(
            workload, args, bodies, checkpoint, api_key, work_dir
        )
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick sets shorter defaults for whatever was not given."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", default="w1,w2", help="comma-separated: w1, w2")
    parser.add_argument("--duration-s", type=float, default=None, help="per run (default 20)")
    parser.add_argument("--warmup-s", type=float, default=None, help="warm-up (default 5)")
    parser.add_argument("--connections", default=None, help="comma-separated counts (default 8,32)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 5 s runs, 8 conns")
    parser.add_argument(
        "--source",
        default=None,
        help="benchmark this git ref (a `git archive` snapshot plus the current bench/) "
        "instead of the working tree",
    )
    parser.add_argument(
        "--ray-ingress",
        default="proxy,haproxy",
        help="Ray Serve runs per workload: 'proxy' (Ray's default Python proxy) and/or "
        "'haproxy' (RAY_SERVE_ENABLE_HA_PROXY=1), comma-separated; each may add Ray-wide "
        "settings as +OPTION, e.g. haproxy+tput (options as in bench.embed_bench)",
    )
    parser.add_argument(
        "--batch-texts",
        type=int,
        default=16,
        help=f"texts per request on the bulk route {BATCH_ROUTE}, measured on each Ray Serve "
        "server after its single-text runs, at the largest connection count (0: skip)",
    )
    parser.add_argument(
        "--ingress-replicas",
        type=int,
        default=None,
        help="Ingress replicas for every Ray run (default: as in serve_config.yaml)",
    )
    parser.add_argument(
        "--dashboard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start Ray with its dashboard (default) or without (--no-dashboard)",
    )
    parser.add_argument(
        "--torchserve",
        action="store_true",
        help="also measure TorchServe serving W2's checkpoint (batch size, wait and threads "
        "of W2's TextModeration node, one worker); needs java and builds "
        "bench/.venv-torchserve on first use",
    )
    parser.add_argument("--serve-port", type=int, default=8123)
    parser.add_argument("--baseline-port", type=int, default=8124)
    parser.add_argument(
        "--torchserve-port", type=int, default=8125, help="TorchServe's port (+1, +2 used too)"
    )
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--update-docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite the generated block of the docs (default: on for full runs)",
    )
    args = parser.parse_args(argv)
    args.duration_s = args.duration_s or (5.0 if args.quick else 20.0)
    args.warmup_s = args.warmup_s if args.warmup_s is not None else (2.0 if args.quick else 5.0)
    args.connections = [
        int(c) for c in (args.connections or ("8" if args.quick else "8,32")).split(",")
    ]
    if min(args.connections) < 1 or args.duration_s <= 0 or args.warmup_s < 0:
        parser.error("connections must be >= 1, --duration-s > 0 and --warmup-s >= 0")
    if not 0 <= args.batch_texts <= DEFAULT_NUM_POSTS:
        parser.error(f"--batch-texts must be 0 (off) to {DEFAULT_NUM_POSTS} (the posts sent)")
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - {"w1", "w2"}
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from w1, w2")
    definitions = _workloads(Path("unused"))
    if args.torchserve and not any(definitions[w].torchserve_kind for w in args.workloads):
        parser.error(
            f"--torchserve measures W2 only, but --workloads is {','.join(args.workloads)}; add w2"
        )
    args.ray_ingress = [i.strip() for i in args.ray_ingress.split(",") if i.strip()]
    for entry in args.ray_ingress:
        try:
            ray_ingress_entry(entry)
        except ValueError as exc:
            parser.error(f"--ray-ingress {exc}")
    if args.update_docs is None:
        args.update_docs = not args.quick
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads and write the results."""
    args = parse_args(argv)
    # Started from a non-interactive shell, SIGINT may be ignored and children would inherit
    # that; a handler here means children start with the default and `serve run` can be
    # stopped gracefully with SIGINT. Ctrl-C on the benchmark stops its servers (finally).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started_at = dt.datetime.now().astimezone()
    run_dir = args.results_dir / started_at.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    args.source_dir, source_note = REPO_ROOT, "working tree"
    if args.source:
        args.source_dir = run_dir / "source"
        commit_id = snapshot_source(args.source, args.source_dir)
        source_note = f"git {args.source} ({commit_id[:12]}), snapshot in {args.source_dir}"
    else:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        state = "with uncommitted changes" if dirty.stdout.strip() else "clean"
        source_note = f"working tree at {head.stdout.strip()} ({state})"
    _log(f"code under test: {source_note}")
    posts = generate_posts(DEFAULT_NUM_POSTS)
    bodies = write_request_bodies(run_dir / "bodies.jsonl", posts)
    batch_bodies: Path | None = None
    if args.batch_texts > 0 and args.ray_ingress:
        batch_bodies = write_batch_request_bodies(
            run_dir / f"bodies-batch{args.batch_texts}.jsonl", posts, args.batch_texts
        )
    api_key = "bench-" + secrets.token_urlsafe(18)
    checkpoint: Path | None = None
    if "w2" in args.workloads:
        checkpoint = args.results_dir / "checkpoints" / "bert-base-random"
        _log(f"checkpoint: {checkpoint} (random weights; built once, then reused)")
        _run_child_json(
            [sys.executable, "-m", "bench.offline", "build-checkpoint", str(checkpoint)],
            OFFLINE_TIMEOUT_S,
            args.source_dir,
        )
    raw_path = run_dir / "results.json"
    command = "python -m bench.run_all " + shlex.join(argv if argv is not None else sys.argv[1:])
    results: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "command": command.strip(),
        "duration_s": args.duration_s,
        "warmup_s": args.warmup_s,
        "connections": args.connections,
        "batch_texts": args.batch_texts,
        "machine": machine_info(),
        "source": source_note,
        "raw_path": str(raw_path.relative_to(REPO_ROOT)),
        "num_posts": DEFAULT_NUM_POSTS,
        "workloads": {},
    }
    definitions = _workloads(checkpoint or Path("unused"))
    for name in args.workloads:
        results["workloads"][name] = run_workload(
            definitions[name], args, bodies, checkpoint, api_key, run_dir,
            batch_bodies=batch_bodies,
        )  # fmt: skip
        raw_path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    results["finished_at"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    raw_path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    (args.results_dir / "latest.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    generated = report.results_markdown(results)
    print(generated)
    if args.update_docs:
        report.update_doc(args.docs, generated)
        _log(f"updated {args.docs}")
    _log(f"raw results: {raw_path}")
    plot_path = plot_results(results, run_dir / "plot.png")
    _log(f"plot: {plot_path}" if plot_path else "no plot written (matplotlib missing or no data)")
    failed = [
        f"{name}/{key}"
        for name, workload in results["workloads"].items()
        for key, server in workload["servers"].items()
        if "error" in server
    ]
    if failed:
        _log(f"failed setups: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
