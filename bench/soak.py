"""Soak: the default graph at 80% of its measured capacity for 10 minutes, on mixed routes.

    .venv/bin/python -m bench.soak                       # 10 min soak (about 13 min in all)
    .venv/bin/python -m bench.soak --duration-s 60 --window-s 10     # a short look

One run: start ``serve_config.yaml`` as shipped (ports changed; the Ingress may fetch images
from 127.0.0.1, where a local image server runs) on a private Ray instance; store posts so
feeds and trends have something to rank; measure capacity (closed loop, ``--clients``
concurrent clients, ``--capacity-s``) on the route mix; then send requests at
``--load-fraction`` of that capacity, open loop (a slow answer never delays the next send),
for ``--duration-s``. The mix, by weight: text moderation, a post with an image fetched from
the local server, post and interaction events, feeds, trends, reply suggestions.

Every ``--window-s``: requests answered, errors (non-2xx, failed connections), degraded
answers, p50 and p99 latency of that window, and the resident memory (RSS) of the service's
processes (Ray workers and replicas, raylet, GCS: the server's process tree). Writes
``soak.json`` and ``soak.png`` under ``--out-dir`` (default ``bench/results/soak-<time>``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from bench.posts import generate_posts
from bench.servers import REPO_ROOT, ray_serve_server, serve_config

# Weights of the route mix (relative; see `Mix.request`).
ROUTE_WEIGHTS: dict[str, int] = {
    "moderation_text": 4,
    "post_with_image": 1,
    "events_posts": 1,
    "events_interactions": 2,
    "feed": 2,
    "trends": 1,
    "replies": 2,
}
SEED_POSTS = 300
USERS = 50
IMAGES = 8
# Open loop: at most this many requests in flight; a send beyond it counts as an error
# ("overrun"), so an overloaded service shows up instead of the generator queueing silently.
MAX_IN_FLIGHT = 512
REQUEST_TIMEOUT_S = 30.0
# Windows before this many seconds are warm-up: memory growth is measured after them.
DEFAULT_WARMUP_S = 60.0


@dataclass(frozen=True)
class Request:
    """One request of the mix: its route name, method, path and JSON body."""

    route: str
    method: str
    path: str
    body: dict[str, Any] | None = None


@dataclass
class Mix:
    """Builds the requests of the route mix (deterministic for one seed)."""

    image_urls: list[str]
    seed: int = 0
    posts: list[str] = field(default_factory=lambda: generate_posts(SEED_POSTS))
    _post_ids: list[str] = field(default_factory=list)
    _counter: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._routes = list(ROUTE_WEIGHTS)
        self._weights = [ROUTE_WEIGHTS[name] for name in self._routes]

    def _next_id(self) -> int:
        self._counter += 1
        return self._counter

    def seed_posts(self, count: int = SEED_POSTS) -> list[Request]:
        """Post events that give feeds and trends something to rank (100 posts a request)."""
        now = dt.datetime.now(dt.UTC)
        posts = []
        for index in range(count):
            post_id = f"soak-seed-{index}"
            self._post_ids.append(post_id)
            posts.append(
                {
                    "post_id": post_id,
                    "author_id": f"author-{index % USERS}",
                    "text": self.posts[index % len(self.posts)],
                    "created_at": (now - dt.timedelta(minutes=index)).isoformat(),
                }
            )
        return [
            Request("events_posts", "POST", "/api/v1/events/posts", {"posts": posts[i : i + 100]})
            for i in range(0, len(posts), 100)
        ]

    def request(self) -> Request:
        """The next request of the mix, its route drawn by weight."""
        route = self._rng.choices(self._routes, self._weights)[0]
        text = self._rng.choice(self.posts)
        user = f"user-{self._rng.randrange(USERS)}"
        number = self._next_id()
        if route == "moderation_text":
            # A number keeps texts distinct: the result cache must not answer them all.
            return Request(route, "POST", "/api/v1/moderation/text", {"text": f"{text} #{number}"})
        if route == "post_with_image":
            body = {"content": f"{text} #{number}", "images": [self._rng.choice(self.image_urls)]}
            return Request(route, "POST", "/api/v1/moderation/moderate", body)
        if route == "events_posts":
            post_id = f"soak-{number}"
            self._post_ids.append(post_id)
            post = {
                "post_id": post_id,
                "author_id": user,
                "text": f"{text} #{number}",
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
            }
            return Request(route, "POST", "/api/v1/events/posts", {"posts": [post]})
        if route == "events_interactions":
            events = [
                {
                    "event_id": f"soak-ev-{number}-{i}",
                    "user_id": user,
                    "post_id": self._rng.choice(self._post_ids),
                    "type": self._rng.choice(["view", "view", "like", "comment", "share"]),
                    "timestamp": dt.datetime.now(dt.UTC).isoformat(),
                }
                for i in range(5)
            ]
            body = {"interactions": events}
            return Request(route, "POST", "/api/v1/events/interactions", body)
        if route == "feed":
            candidates = self._rng.sample(self._post_ids, min(100, len(self._post_ids)))
            body = {"user_id": user, "candidate_post_ids": candidates, "limit": 20}
            return Request(route, "POST", "/api/v1/recommendations/feed", body)
        if route == "trends":
            return Request(route, "GET", "/api/v1/trends")
        return Request(route, "POST", "/api/v1/replies/suggest", {"message": text[:200]})


@dataclass(frozen=True)
class Outcome:
    """One answered (or failed) request."""

    route: str
    done_s: float
    latency_s: float
    ok: bool
    degraded: bool
    status: int | None


def _degraded(response: httpx.Response) -> bool:
    if response.status_code != 200 or not response.content.startswith(b"{"):
        return False
    try:
        return bool(response.json().get("degraded"))
    except ValueError:
        return False


async def send(client: httpx.AsyncClient, request: Request, started_s: float) -> Outcome:
    """Send ``request``; a failed connection or timeout is an outcome, not an exception."""
    try:
        response = await client.request(request.method, request.path, json=request.body)
    except httpx.HTTPError:
        done = time.monotonic()
        return Outcome(request.route, done, done - started_s, False, False, None)
    done = time.monotonic()
    ok = 200 <= response.status_code < 300
    return Outcome(
        request.route, done, done - started_s, ok, _degraded(response), response.status_code
    )


def _client(base_url: str, api_key: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT)
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"X-API-Key": api_key},
        limits=limits,
        timeout=REQUEST_TIMEOUT_S,
        trust_env=False,
    )


async def measure_capacity(
    base_url: str, api_key: str, mix: Mix, clients: int, duration_s: float
) -> dict[str, Any]:
    """Closed loop: ``clients`` clients send the mix back to back; successful answers/s."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + duration_s

    async def client_loop(http: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            outcomes.append(await send(http, mix.request(), time.monotonic()))

    async with _client(base_url, api_key) as http:
        started = time.monotonic()
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
        wall_s = time.monotonic() - started
    ok = sum(1 for outcome in outcomes if outcome.ok)
    return {
        "clients": clients,
        "duration_s": round(wall_s, 2),
        "requests": len(outcomes),
        "ok": ok,
        "errors": len(outcomes) - ok,
        "ok_per_s": round(ok / wall_s, 2),
        **_percentiles([o.latency_s for o in outcomes if o.ok]),
    }


def _percentiles(latencies_s: list[float]) -> dict[str, float | None]:
    if not latencies_s:
        return {"p50_ms": None, "p99_ms": None}
    values = np.asarray(latencies_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
    }


def summarize_window(
    index: int, window_s: float, outcomes: list[Outcome], memory: dict[str, float]
) -> dict[str, Any]:
    """One window's figures: answers, errors, degraded, p50/p99 (ms) and memory."""
    ok = [outcome for outcome in outcomes if outcome.ok]
    errors_by_status: dict[str, int] = {}
    for outcome in outcomes:
        if not outcome.ok:
            key = str(outcome.status) if outcome.status is not None else "no answer"
            errors_by_status[key] = errors_by_status.get(key, 0) + 1
    return {
        "window": index,
        "end_s": round((index + 1) * window_s, 1),
        "requests": len(outcomes),
        "ok_per_s": round(len(ok) / window_s, 2),
        "errors": len(outcomes) - len(ok),
        "errors_by_status": errors_by_status,
        "degraded": sum(1 for outcome in outcomes if outcome.degraded),
        **_percentiles([outcome.latency_s for outcome in ok]),
        **memory,
    }


async def run_soak(
    base_url: str,
    api_key: str,
    mix: Mix,
    rate_per_s: float,
    duration_s: float,
    window_s: float,
    memory: Callable[[], dict[str, float]],
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Send the mix at ``rate_per_s`` (open loop) for ``duration_s``; one summary per window.

    A window's figures are those of the requests answered in it; requests still in flight at
    the end are waited for and counted in the last window.
    """
    windows: list[dict[str, Any]] = []
    pending: list[Outcome] = []
    in_flight: set[asyncio.Task[Outcome]] = set()
    overruns = 0
    started = time.monotonic()
    window_count = max(1, round(duration_s / window_s))

    def collect(task: asyncio.Task[Outcome]) -> None:
        in_flight.discard(task)
        pending.append(task.result())

    async with _client(base_url, api_key) as http:
        sent = 0
        for index in range(window_count):
            window_end = started + (index + 1) * window_s
            while True:
                next_send = started + sent / rate_per_s
                if next_send >= window_end:
                    break
                await asyncio.sleep(max(0.0, next_send - time.monotonic()))
                sent += 1
                if len(in_flight) >= MAX_IN_FLIGHT:
                    overruns += 1
                    now = time.monotonic()
                    pending.append(Outcome("overrun", now, 0.0, False, False, None))
                    continue
                task = asyncio.ensure_future(send(http, mix.request(), time.monotonic()))
                in_flight.add(task)
                task.add_done_callback(collect)
            await asyncio.sleep(max(0.0, window_end - time.monotonic()))
            if index == window_count - 1 and in_flight:
                await asyncio.wait(set(in_flight), timeout=REQUEST_TIMEOUT_S + 5)
            outcomes, pending[:] = list(pending), []
            summary = summarize_window(index, window_s, outcomes, memory())
            summary["overruns"] = overruns
            windows.append(summary)
            log(
                f"window {index + 1}/{window_count}: {summary['ok_per_s']} ok/s, "
                f"errors {summary['errors']}, degraded {summary['degraded']}, "
                f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, "
                f"RSS {summary.get('rss_mb', 0):.0f} MB"
            )
    return windows


def memory_growth(
    windows: list[dict[str, Any]], window_s: float, warmup_s: float
) -> dict[str, Any]:
    """RSS at the end of the warm-up and at the end of the run, and the growth in percent."""
    after = [w for w in windows if w["end_s"] > warmup_s and "rss_mb" in w]
    if len(after) < 2:
        return {"after_warmup_mb": None, "end_mb": None, "growth_pct": None}
    base, end = after[0]["rss_mb"], after[-1]["rss_mb"]
    return {
        "after_warmup_mb": round(base, 1),
        "end_mb": round(end, 1),
        "max_mb": round(max(w["rss_mb"] for w in after), 1),
        "growth_pct": round((end - base) / base * 100, 2),
    }


def plot_soak(result: dict[str, Any], out_png: Path) -> Path | None:
    """Throughput and errors, p50/p99 latency and RSS per window; None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    windows = result["windows"]
    minutes = [w["end_s"] / 60 for w in windows]
    figure = Figure(figsize=(12, 9), layout="constrained")
    FigureCanvasAgg(figure)
    throughput_ax, latency_ax, memory_ax = figure.subplots(3, 1, sharex=True)
    throughput_ax.plot(minutes, [w["ok_per_s"] for w in windows], marker="o", label="ok req/s")
    throughput_ax.axhline(
        result["target_rate_per_s"], color="grey", linestyle="--",
        label=f"target {result['target_rate_per_s']:.1f} req/s "
        f"({result['load_fraction']:.0%} of {result['capacity']['ok_per_s']:.1f})",
    )  # fmt: skip
    errors_ax = throughput_ax.twinx()
    errors_ax.bar(minutes, [w["errors"] for w in windows], width=0.2, color="C3", alpha=0.5)
    errors_ax.set_ylabel("errors per window", color="C3")
    errors_ax.set_ylim(bottom=0, top=max(1, *(w["errors"] for w in windows)) * 1.2)
    throughput_ax.set_ylabel("req/s (2xx)")
    throughput_ax.legend(loc="lower left", fontsize="small")
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        latency_ax.plot(minutes, [w[key] for w in windows], marker="o", label=label)
    latency_ax.set_ylabel("latency (ms)")
    latency_ax.legend(loc="upper left", fontsize="small")
    memory_ax.plot(minutes, [w.get("rss_mb", 0) for w in windows], marker="o", color="C2")
    memory_ax.set_ylabel("RSS of the service (MB)")
    memory_ax.axvline(result["warmup_s"] / 60, color="grey", linestyle=":", label="end of warm-up")
    memory_ax.legend(loc="lower right", fontsize="small")
    memory_ax.set_xlabel("minutes into the soak")
    for ax in (throughput_ax, latency_ax, memory_ax):
        ax.grid(True, alpha=0.3)
    throughput_ax.set_ylim(bottom=0)
    latency_ax.set_ylim(bottom=0)
    # Memory from 90% of its lowest reading: a few percent of growth must be visible.
    readings = [w["rss_mb"] for w in windows if "rss_mb" in w]
    if readings:
        memory_ax.set_ylim(bottom=0.9 * min(readings), top=1.05 * max(readings))
    growth = result["memory"]["growth_pct"]
    figure.suptitle(
        f"Soak of {result['started_at']}: {result['totals']['errors']} errors in "
        f"{result['totals']['requests']} requests, RSS growth after warm-up "
        f"{'n/a' if growth is None else f'{growth:+.1f}%'}"
    )
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=90)
    return out_png


def _image_payloads() -> dict[str, bytes]:
    from bench.images import make_images

    return {f"/img-{index}.jpg": data for index, data in enumerate(make_images(IMAGES))}


@contextmanager
def image_server() -> Iterator[list[str]]:
    """JPEGs on a free 127.0.0.1 port for the duration of the block; yields their URLs."""
    payloads = _image_payloads()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet."""

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = payloads.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield [f"http://127.0.0.1:{port}{path}" for path in payloads]
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def soak_config(port: int) -> dict[str, Any]:
    """``serve_config.yaml`` with free ports and images from 127.0.0.1 allowed."""
    base = yaml.safe_load((REPO_ROOT / "serve_config.yaml").read_text(encoding="utf-8"))
    (application,) = base["applications"]
    ingress = next(d for d in application["deployments"] if d["name"] == "Ingress")
    images = {**ingress["user_config"]["images"], "allowed_hosts": ["127.0.0.1"]}
    config = serve_config(
        REPO_ROOT / "serve_config.yaml",
        port,
        deployment_overrides={"Ingress": {"user_config": {"images": images}}},
    )
    if "grpc_options" in config:
        config["grpc_options"]["port"] = _free_port()
    return config


async def _seed(base_url: str, api_key: str, mix: Mix) -> None:
    async with _client(base_url, api_key) as http:
        for request in mix.seed_posts():
            response = await http.request(request.method, request.path, json=request.body)
            response.raise_for_status()


def _log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


def soak_against(
    base_url: str,
    api_key: str,
    image_urls: list[str],
    memory: Callable[[], dict[str, float]],
    *,
    duration_s: float,
    capacity_s: float,
    clients: int,
    load_fraction: float,
    window_s: float,
    warmup_s: float,
) -> dict[str, Any]:
    """Seed posts, measure capacity, soak at ``load_fraction`` of it; the result document."""
    mix = Mix(image_urls)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    asyncio.run(_seed(base_url, api_key, mix))
    _log(f"capacity: {clients} clients, closed loop, {capacity_s:.0f} s")
    capacity = asyncio.run(measure_capacity(base_url, api_key, mix, clients, capacity_s))
    _log(f"capacity {capacity['ok_per_s']} ok/s ({capacity['errors']} errors)")
    rate = max(0.5, capacity["ok_per_s"] * load_fraction)
    _log(f"soak at {rate:.1f} req/s for {duration_s:.0f} s")
    windows = asyncio.run(
        run_soak(base_url, api_key, mix, rate, duration_s, window_s, memory, _log)
    )
    totals = {
        "requests": sum(w["requests"] for w in windows),
        "errors": sum(w["errors"] for w in windows),
        "degraded": sum(w["degraded"] for w in windows),
    }
    return {
        "started_at": started_at,
        "duration_s": duration_s,
        "window_s": window_s,
        "warmup_s": warmup_s,
        "load_fraction": load_fraction,
        "route_weights": ROUTE_WEIGHTS,
        "capacity": capacity,
        "target_rate_per_s": round(rate, 2),
        "windows": windows,
        "totals": totals,
        "memory": memory_growth(windows, window_s, warmup_s),
        "load_average": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> None:
    """Start the service, soak it, write ``soak.json`` and ``soak.png``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--capacity-s", type=float, default=45.0)
    parser.add_argument("--clients", type=int, default=32, help="Capacity: concurrent clients.")
    parser.add_argument("--load-fraction", type=float, default=0.8)
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("--warmup-s", type=float, default=DEFAULT_WARMUP_S)
    parser.add_argument("--out-dir", type=Path, default=None)
    options = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = options.out_dir or REPO_ROOT / "bench" / "results" / f"soak-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    api_key = secrets.token_urlsafe(24)
    port = _free_port()
    server = ray_serve_server(soak_config(port), api_key, out_dir / "server", dashboard=False)
    load_before = os.getloadavg()
    with image_server() as image_urls:
        _log(f"starting the default graph on {server.base_url}")
        server.start()
        try:
            _log(f"healthy after {server.startup_s:.0f} s")
            assert server.tree is not None
            result = soak_against(
                server.base_url, api_key, image_urls, server.tree.memory,
                duration_s=options.duration_s, capacity_s=options.capacity_s,
                clients=options.clients, load_fraction=options.load_fraction,
                window_s=options.window_s, warmup_s=options.warmup_s,
            )  # fmt: skip
        finally:
            server.stop()
    result["load_average_before"] = list(load_before)
    args = sys.argv[1:] if argv is None else argv
    result["command"] = " ".join(["python -m bench.soak", *args])
    (out_dir / "soak.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    png = plot_soak(result, out_dir / "soak.png")
    _log(
        f"{result['totals']['errors']} errors in {result['totals']['requests']} requests, "
        f"memory {result['memory']}; wrote {out_dir / 'soak.json'}" + (f" and {png}" if png else "")
    )


if __name__ == "__main__":
    main()
