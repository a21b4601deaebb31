"""One text encoder for the graph against one MiniLM per node: memory, start-up and the hop.

``python -m bench.shared_encoder`` starts ``serve_config.yaml`` as committed
(``text_vectors.encoder: shared``: the Embedder encodes for the head moderation / sentiment and
smart-reply nodes) and the same file with ``encoder: per_node`` (each of those nodes loads its
own MiniLM), one after the other on the same machine in the same run. For each it records the
time from start to a healthy ``/health``, the PSS and RSS of every process of the tree after a
warm-up (by process label, summed over same-named processes), and wrk on
``POST /api/v1/moderation/text`` and ``POST /api/v1/sentiment/analyze`` (result caches off, as
in W1) to show what the extra hop costs. It prints one JSON document with the ratios
shared / per_node.

    python -m bench.shared_encoder --duration-s 10 --results bench/results/shared_encoder.json
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.default_models import NO_CACHE, ROUTES
from bench.loadgen import run_wrk
from bench.posts import generate_posts, write_request_bodies
from bench.procs import MB, _label
from bench.report import emit_json
from bench.servers import REPO_ROOT, Server, ray_serve_server, serve_config

SETUPS = ("per_node", "shared")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration-s", type=float, default=15.0, help="per route and setup")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="per route and setup")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve-port", type=int, default=8127)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "serve_config.yaml")
    parser.add_argument("--rounds", type=int, default=1, help="setups alternate this often")
    parser.add_argument("--results", type=Path, default=None, help="write the JSON here too")
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(f"[shared_encoder {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _memory_by_label(server: Server) -> dict[str, dict[str, float]]:
    """PSS and RSS in MB per process label (same-named processes summed), and a count."""
    import psutil

    assert server.tree is not None
    by_label: dict[str, dict[str, float]] = defaultdict(
        lambda: {"pss_mb": 0.0, "rss_mb": 0.0, "processes": 0}
    )
    for process in server.tree.refresh():
        try:
            info = process.memory_full_info()
            row = by_label[_label(process)]
            row["pss_mb"] += getattr(info, "pss", 0) / MB
            row["rss_mb"] += info.rss / MB
            row["processes"] += 1
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return dict(sorted(by_label.items(), key=lambda item: -item[1]["pss_mb"]))


def _measure(name: str, args: argparse.Namespace, api_key: str, bodies: Path) -> dict[str, Any]:
    config = serve_config(args.config, args.serve_port, deployment_overrides=NO_CACHE)
    (application,) = config["applications"]
    application["args"].setdefault("text_vectors", {})["encoder"] = name
    work_dir = Path(tempfile.mkdtemp(prefix=f"sp-encoder-{name}-"))
    server = ray_serve_server(config, api_key, work_dir, dashboard=False)
    _log(f"{name}: starting on {server.base_url} (log {server.log_path})")
    server.start()
    result: dict[str, Any] = {"startup_s": server.startup_s, "routes": {}}
    try:
        for route in ROUTES:
            run_wrk(server.base_url, route, bodies, api_key, args.connections, args.warmup_s)
            load = run_wrk(
                server.base_url, route, bodies, api_key, args.connections, args.duration_s
            )
            result["routes"][route] = {
                "req_per_s": load.ok_per_s,
                "p50_ms": load.latency_p50_ms,
                "p99_ms": load.latency_p99_ms,
                "errors": load.errors,
                "degraded": load.degraded,
            }
            _log(f"{name} {route}: {result['routes'][route]}")
        assert server.tree is not None
        result["memory"] = server.tree.memory()
        result["memory_by_process"] = _memory_by_label(server)
        _log(f"{name}: {result['memory']}")
    finally:
        server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    """Measure both setups in one run and print the JSON."""
    args = parse_args(argv)
    api_key = secrets.token_urlsafe(24)
    bodies = write_request_bodies(
        Path(tempfile.mkdtemp(prefix="sp-encoder-bodies-")) / "bodies.jsonl", generate_posts()
    )
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in SETUPS}
    for _ in range(args.rounds):
        for name in SETUPS:
            rounds[name].append(_measure(name, args, api_key, bodies))

    def median(name: str, pick: Any) -> float:
        return float(statistics.median(pick(r) for r in rounds[name]))

    summary: dict[str, Any] = {}
    for name in SETUPS:
        summary[name] = {
            "startup_s": median(name, lambda r: r["startup_s"]),
            "pss_mb": median(name, lambda r: r["memory"]["pss_mb"]),
            "rss_mb": median(name, lambda r: r["memory"]["rss_mb"]),
            "processes": median(name, lambda r: r["memory"]["processes"]),
            **{
                route: {
                    figure: median(
                        name, lambda r, route=route, figure=figure: r["routes"][route][figure]
                    )
                    for figure in ("req_per_s", "p50_ms", "p99_ms")
                }
                for route in ROUTES
            },
        }
    shared, per_node = summary["shared"], summary["per_node"]
    document = {
        "summary": summary,
        "ratio_shared_to_per_node": {
            "pss": shared["pss_mb"] / per_node["pss_mb"],
            "rss": shared["rss_mb"] / per_node["rss_mb"],
            "startup": shared["startup_s"] / per_node["startup_s"],
            **{
                f"{route} req/s": shared[route]["req_per_s"] / per_node[route]["req_per_s"]
                for route in ROUTES
                if per_node[route]["req_per_s"]
            },
        },
        "rounds": rounds,
        "command": "python -m bench.shared_encoder " + " ".join(argv or sys.argv[1:]),
    }
    emit_json(document, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
