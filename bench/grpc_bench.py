"""gRPC against HTTP into the same graph: ``python -m bench.grpc_bench`` (issue 8, lever 2).

Server-to-server callers can use the service's gRPC ``AIService`` (Ray Serve's gRPC proxy,
``grpc_options`` in ``serve_config.yaml``) instead of HTTP/JSON. This starts the default graph
once per ingress (W1's config: ``serve_config.yaml`` as shipped, result cache off) and drives
both protocols with ONE load generator, h2load (Debian package ``nghttp2-client``), so the
comparison is not one of load generators:

* HTTP/1.1: ``POST /api/v1/moderation/text`` with ``{"text": ...}`` (``h2load --h1``);
* gRPC: ``/AIService/ModerateContent`` with the same post (HTTP/2, one stream per connection).

h2load sends one fixed body per run (it cannot rotate bodies as wrk's script does), so both
protocols moderate the same post; the result cache is off, so the model runs every time.
h2load counts a gRPC answer as succeeded by its HTTP status alone, so every run is checked
against the ingress's own count: the TextModeration node's ``items_sent`` in ``/api/v1/health``
must grow by at least the answers h2load counted, and one Python gRPC call before and after
must return a real (not degraded) decision.

    python -m bench.grpc_bench                      # Ray's proxy, 8 and 32 connections
    python -m bench.grpc_bench --ingress proxy,haproxy --connections 32 --runs 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import procs
from bench.posts import generate_posts
from bench.run_all import DISTURBED_OTHER_CORES, ROUTE, _workloads
from bench.servers import (
    REPO_ROOT,
    VARIANT_ENV_OPTIONS,
    Server,
    haproxy_env,
    ray_ingress_entry,
    ray_serve_server,
    serve_config,
)

GRPC_METHOD = "/AIService/ModerateContent"
PROTOCOLS = ("http", "grpc")


def _log(message: str) -> None:
    print(f"[grpc-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class H2LoadError(RuntimeError):
    """h2load is missing, failed, or printed no summary."""


def h2load_path() -> str:
    """The h2load binary, or an error naming the package to install."""
    path = shutil.which("h2load")
    if path is None:
        raise H2LoadError("h2load not found; install it with: apt-get install -y nghttp2-client")
    return path


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: flag 0 (not compressed), 4-byte big-endian length."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def moderation_request_bytes(text: str) -> bytes:
    """``ModerationRequest{content: text}`` serialised, framed for the gRPC wire."""
    from deployments.protos import ai_service_pb2 as pb

    return grpc_frame(pb.ModerationRequest(content=text).SerializeToString())


def parse_h2load(stdout: str) -> dict[str, float]:
    """The summary counts of an h2load run: ``done``, ``succeeded``, ``failed``, ``errored``,
    ``timeout`` and the status-code classes ``2xx`` ... ``5xx``.

    Raises:
        H2LoadError: No ``requests:`` line (h2load did not run to its summary).
    """
    counts: dict[str, float] = {}
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("requests:"):
            for part in line.removeprefix("requests:").split(","):
                number, _, name = part.strip().partition(" ")
                counts[name.strip()] = float(number)
        elif line.startswith("status codes:"):
            for part in line.removeprefix("status codes:").split(","):
                number, _, name = part.strip().partition(" ")
                counts[name.strip()] = float(number)
    if "done" not in counts:
        raise H2LoadError(f"h2load printed no summary:\n{stdout[-800:]}")
    return counts


def latencies_ms(log_path: Path) -> list[float]:
    """Per-request latencies from an h2load ``--log-file`` (start, status, duration in µs)."""
    values = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[1].strip() == "200":
            values.append(int(fields[2]) / 1000.0)
    return values


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0..1) of `values` by nearest rank; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def h2load_command(
    protocol: str,
    port: int,
    body_path: Path,
    api_key: str,
    connections: int,
    duration_s: float,
    warmup_s: float,
    log_path: Path,
) -> list[str]:
    """The h2load invocation for one run of `protocol` (``http`` or ``grpc``)."""
    command = [h2load_path(), "-c", str(connections), "-m", "1", "-t", "1"]
    command += ["-D", str(int(duration_s)), "--warm-up-time", str(int(warmup_s))]
    command += ["-d", str(body_path), "--log-file", str(log_path), "-H", f"x-api-key: {api_key}"]
    if protocol == "http":
        command += ["--h1", "-H", "content-type: application/json"]
        return [*command, f"http://127.0.0.1:{port}{ROUTE}"]
    command += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    return [*command, f"http://127.0.0.1:{port}{GRPC_METHOD}"]


def _items_sent(base_url: str, api_key: str) -> int:
    """Texts the ingress has sent to TextModeration (coalescing stats in the detailed health
    report, ``/api/v1/health``; the bench's key is an operator key)."""
    health = httpx.get(
        f"{base_url}/api/v1/health", headers={"X-API-Key": api_key}, timeout=10.0
    ).json()
    nodes = (health.get("coalescing") or {}).get("nodes") or {}
    return int((nodes.get("TextModeration") or {}).get("items_sent", 0))


def grpc_check(port: int, api_key: str, text: str) -> dict[str, Any]:
    """One ModerateContent call with the Python client; raises unless a model answered."""
    import grpc

    from deployments.protos import ai_service_pb2 as pb
    from deployments.protos import ai_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.AIServiceStub(channel)
        reply = stub.ModerateContent(
            pb.ModerationRequest(content=text), metadata=(("x-api-key", api_key),), timeout=10.0
        )
    if reply.degraded or not reply.model.name:
        raise RuntimeError(f"gRPC answer came from no model or a fallback: {reply}")
    return {"action": reply.action, "model": reply.model.name, "version": reply.model.version}


def measured_run(
    server: Server,
    protocol: str,
    port: int,
    body_path: Path,
    api_key: str,
    connections: int,
    duration_s: float,
    warmup_s: float,
    run_dir: Path,
) -> dict[str, Any]:
    """One h2load run with CPU per process, checked against the ingress's own count."""
    assert server.tree is not None
    log_path = run_dir / f"h2load-{protocol}-c{connections}-{time.monotonic_ns()}.log"
    command = h2load_command(
        protocol, port, body_path, api_key, connections, duration_s, warmup_s, log_path
    )
    items_before = _items_sent(server.base_url, api_key)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # CPU counted from the end of the warm-up: h2load's own figures exclude it too.
    time.sleep(warmup_s)
    tree_before = server.tree.cpu_times_s()
    busy_before, measured_from = procs.machine_busy_s(), time.monotonic()
    stdout, _ = process.communicate(timeout=duration_s + warmup_s + 120.0)
    wall_s = time.monotonic() - measured_from
    busy_s = procs.machine_busy_s() - busy_before
    tree_after = server.tree.cpu_times_s()
    if process.returncode != 0:
        raise H2LoadError(f"h2load exited with {process.returncode}:\n{stdout[-800:]}")
    counts = parse_h2load(stdout)
    items_after = _items_sent(server.base_url, api_key)
    values = latencies_ms(log_path)
    log_path.unlink(missing_ok=True)
    cores = server.tree.cores_by_label(tree_before, tree_after, wall_s)
    server_cores = sum(cores.values())
    moderated = items_after - items_before
    return {
        "protocol": protocol,
        "connections": connections,
        "duration_s": duration_s,
        "ok_per_s": counts.get("succeeded", 0.0) / duration_s,
        "succeeded": counts.get("succeeded", 0.0),
        "failed": counts.get("failed", 0.0) + counts.get("errored", 0.0),
        "moderated_by_node": moderated,
        "latency_p50_ms": percentile(values, 0.50),
        "latency_p99_ms": percentile(values, 0.99),
        "latency_mean_ms": statistics.fmean(values) if values else 0.0,
        "cores_by_process": cores,
        "server_cores": server_cores,
        "other_cores": max(0.0, busy_s / wall_s - server_cores),
        "wall_s": time.monotonic() - started,
    }


def _checked_run(*run_args: Any) -> dict[str, Any]:
    run = measured_run(*run_args)
    # h2load itself is part of "other" here (~0.1-0.3 cores); rerun only when clearly busier.
    if run["other_cores"] > DISTURBED_OTHER_CORES + 0.3:
        _log(f"run disturbed ({run['other_cores']:.2f} cores of other load); rerun once")
        run = measured_run(*run_args)
    if run["moderated_by_node"] < run["succeeded"]:
        raise RuntimeError(
            f"{run['protocol']}: h2load counted {run['succeeded']:.0f} answers but the "
            f"ingress sent only {run['moderated_by_node']} texts to TextModeration: some "
            "answers were errors in gRPC trailers, not decisions"
        )
    return run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ingress",
        default="proxy",
        help="any of proxy, haproxy, each optionally with +OPTION for Ray-wide settings "
        f"(one of {sorted(VARIANT_ENV_OPTIONS)}, as in bench.embed_bench), e.g. haproxy+tput",
    )
    parser.add_argument("--connections", default="8,32")
    parser.add_argument("--runs", type=int, default=2, help="per protocol and count")
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--serve-port", type=int, default=8123)
    parser.add_argument("--grpc-port", type=int, default=9123)
    parser.add_argument("--results-dir", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.ingress = [name.strip() for name in args.ingress.split(",") if name.strip()]
    for entry in args.ingress:
        try:
            ray_ingress_entry(entry)
        except ValueError as exc:
            parser.error(f"--ingress {exc}")
    if not args.ingress:
        parser.error("--ingress: name at least one of proxy, haproxy")
    args.connections = [int(count) for count in args.connections.split(",")]
    if args.runs < 1 or any(count < 1 for count in args.connections):
        parser.error("--runs and every --connections count must be at least 1")
    return args


def results_markdown(results: dict[str, Any]) -> str:
    """The runs as a markdown table (one row per ingress, protocol and connection count)."""
    lines = [
        "| ingress | protocol | connections | req/s | p50 ms | p99 ms | failed | "
        "moderated by node | CPU, cores (top processes) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ingress, outcome in results["ingress"].items():
        if "error" in outcome:
            lines.append(f"| {ingress} | — | — | error: {outcome['error']} | | | | | |")
            continue
        for run in outcome["runs"]:
            top = ", ".join(
                f"{label} {cores:.2f}" for label, cores in list(run["cores_by_process"].items())[:4]
            )
            lines.append(
                f"| {ingress} | {run['protocol']} | {run['connections']} | "
                f"{run['ok_per_s']:.1f} | {run['latency_p50_ms']:.1f} | "
                f"{run['latency_p99_ms']:.1f} | {run['failed']:.0f} | "
                f"{run['moderated_by_node']} | {top} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Start the graph per ingress, run h2load over HTTP and gRPC, write JSON and a table."""
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    h2load_path()
    started_at = dt.datetime.now().astimezone()
    run_dir = args.results_dir / started_at.strftime("grpc-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    post = generate_posts(1)[0]
    http_body = run_dir / "body.json"
    http_body.write_text(json.dumps({"text": post}), encoding="utf-8")
    grpc_body = run_dir / "body.grpc"
    grpc_body.write_bytes(moderation_request_bytes(post))
    api_key = "bench-" + time.strftime("%H%M%S") + "-grpc"
    w1 = _workloads(Path("/nonexistent"))["w1"]
    results: dict[str, Any] = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "command": "python -m bench.grpc_bench " + " ".join(argv or sys.argv[1:]),
        "post_chars": len(post),
        "ingress": {},
    }
    for entry in args.ingress:
        ingress, ray_env = ray_ingress_entry(entry)
        config = serve_config(REPO_ROOT / "serve_config.yaml", args.serve_port, None, w1.overrides)
        config["grpc_options"]["port"] = args.grpc_port
        server = ray_serve_server(config, api_key, run_dir / entry, REPO_ROOT)
        server.env.update(ray_env)
        if ingress == "haproxy":
            state_dir = Path(tempfile.mkdtemp(prefix="sph-", dir="/tmp"))
            server.env.update(haproxy_env(state_dir))
            server.cleanup_paths.append(state_dir)
        outcome: dict[str, Any] = {"runs": []}
        _log(f"starting the graph behind {entry}")
        try:
            server.start()
            outcome["check_before"] = grpc_check(args.grpc_port, api_key, post)
            for count in args.connections:
                for _ in range(args.runs):
                    for protocol in PROTOCOLS:
                        port = args.serve_port if protocol == "http" else args.grpc_port
                        body = http_body if protocol == "http" else grpc_body
                        run = _checked_run(
                            server, protocol, port, body, api_key, count, args.duration_s,
                            args.warmup_s, run_dir,
                        )  # fmt: skip
                        outcome["runs"].append(run)
                        _log(
                            f"{entry} {protocol} c={count}: {run['ok_per_s']:.1f} req/s, "
                            f"p50 {run['latency_p50_ms']:.1f} ms, p99 "
                            f"{run['latency_p99_ms']:.1f} ms, failed {run['failed']:.0f}, "
                            f"other load {run['other_cores']:.2f}"
                        )
            outcome["check_after"] = grpc_check(args.grpc_port, api_key, post)
        except Exception as exc:  # noqa: BLE001 - one ingress failing must not lose the other
            _log(f"{entry} failed: {exc}")
            outcome["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        finally:
            server.stop()
        results["ingress"][entry] = outcome
    (run_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    markdown = results_markdown(results)
    (run_dir / "tables.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    _log(f"raw results and table: {run_dir}")
    return 1 if any("error" in outcome for outcome in results["ingress"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
