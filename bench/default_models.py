"""Served speed of the default text models, before and after a change of default: one run.

``python -m bench.default_models`` starts ``serve_config.yaml`` as committed (its default
moderation and sentiment models) and the same file with the models a default is compared
against (``--before-moderation-kind`` / ``--before-sentiment-kind``; the embedded
alt-profanity-check and VADER unless told otherwise), one after the other on the same machine
in the same run, and drives each with wrk (32 keep-alive connections by default) on
``POST /api/v1/moderation/text`` and ``POST /api/v1/sentiment/analyze``. The result caches are
off, as in W1, so every rotating post reaches the model. It prints a JSON document with each
setup's req/s, p50 and p99 and the ratio of the committed default to the one before (medians
over `--rounds` alternating rounds).

    python -m bench.default_models                     # 20 s per route and setup
    python -m bench.default_models --duration-s 10 --results bench/results/default_models.json
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import run_wrk
from bench.posts import generate_posts, write_request_bodies
from bench.report import emit_json
from bench.servers import REPO_ROOT, ray_serve_server, serve_config

ROUTES = ("/api/v1/moderation/text", "/api/v1/sentiment/analyze")
# Both text nodes answer from the model for every request (no result cache), as in W1.
NO_CACHE = {
    "TextModeration": {"user_config": {"cache": {"enabled": False}}},
    "Sentiment": {"user_config": {"cache": {"enabled": False}}},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration-s", type=float, default=20.0, help="per route and setup")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="per route and setup")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve-port", type=int, default=8126)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "serve_config.yaml")
    parser.add_argument("--before-moderation-kind", default="profanity")
    parser.add_argument("--before-sentiment-kind", default="vader")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="setups alternate (before, shipped, before, ...) this many times each: the "
        "spread between rounds of one setup is the noise a ratio must be read against",
    )
    parser.add_argument("--results", type=Path, default=None, help="write the JSON here too")
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(f"[default_models {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _setup_config(args: argparse.Namespace, before: bool) -> dict[str, Any]:
    config = serve_config(args.config, args.serve_port, deployment_overrides=NO_CACHE)
    if before:
        (application,) = config["applications"]
        application["args"]["moderation_model"] = {"kind": args.before_moderation_kind}
        application["args"]["sentiment_model"] = {"kind": args.before_sentiment_kind}
    return config


def _measure_setup(
    name: str, config: dict[str, Any], api_key: str, bodies: Path, args: argparse.Namespace
) -> dict[str, Any]:
    work_dir = Path(tempfile.mkdtemp(prefix=f"sp-defaults-{name}-"))
    server = ray_serve_server(config, api_key, work_dir, dashboard=False)
    _log(f"{name}: starting on {server.base_url} (log {server.log_path})")
    server.start()
    results: dict[str, Any] = {}
    try:
        for route in ROUTES:
            run_wrk(server.base_url, route, bodies, api_key, args.connections, args.warmup_s)
            result = run_wrk(
                server.base_url, route, bodies, api_key, args.connections, args.duration_s
            )
            results[route] = {
                "req_per_s": result.ok_per_s,
                "p50_ms": result.latency_p50_ms,
                "p99_ms": result.latency_p99_ms,
                "errors": result.errors,
                "degraded": result.degraded,
            }
            _log(f"{name} {route}: {results[route]}")
    finally:
        server.stop()
    return results


def _median_figures(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per route, the median of each figure over the rounds of one setup."""
    return {
        route: {
            figure: statistics.median(round_[route][figure] for round_ in rounds)
            for figure in rounds[0][route]
        }
        for route in ROUTES
    }


def main(argv: list[str] | None = None) -> int:
    """Measure both setups in one run and print the JSON."""
    args = parse_args(argv)
    api_key = secrets.token_urlsafe(24)
    bodies = write_request_bodies(
        Path(tempfile.mkdtemp(prefix="sp-defaults-bodies-")) / "bodies.jsonl", generate_posts()
    )
    rounds: dict[str, list[dict[str, Any]]] = {"before": [], "shipped": []}
    for _ in range(args.rounds):
        for name in ("before", "shipped"):
            config = _setup_config(args, before=name == "before")
            rounds[name].append(_measure_setup(name, config, api_key, bodies, args))
    before, shipped = (_median_figures(rounds[name]) for name in ("before", "shipped"))
    document: dict[str, Any] = {
        "connections": args.connections,
        "duration_s": args.duration_s,
        "before": {
            "moderation_kind": args.before_moderation_kind,
            "sentiment_kind": args.before_sentiment_kind,
            "routes": before,
            "rounds": rounds["before"],
        },
        "shipped": {"routes": shipped, "rounds": rounds["shipped"]},
        "ratio_shipped_to_before": {
            route: (
                shipped[route]["req_per_s"] / before[route]["req_per_s"]
                if before[route]["req_per_s"]
                else 0.0
            )
            for route in ROUTES
        },
        "command": "python -m bench.default_models " + " ".join(argv or sys.argv[1:]),
    }
    emit_json(document, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
