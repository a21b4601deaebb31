"""The soak harness for a few seconds against a stub server: windows, totals, JSON, plot.

No Ray: the stub answers every route with a small JSON body (one in ten ``degraded``, one
route with a 500), so the test checks what the harness counts, not the service.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from bench import soak

KEY = "soak-test-key"


@contextmanager
def stub_service() -> Iterator[tuple[str, list[str]]]:
    """A ThreadingHTTPServer answering every route; yields its URL and the paths it saw."""
    seen: list[str] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet."""

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                json.loads(self.rfile.read(length))  # the harness sends valid JSON
            with lock:
                seen.append(self.path)
                count = len(seen)
            status = 500 if self.path == "/api/v1/trends" else 200
            if self.headers.get("X-API-Key") != KEY:
                status = 401
            body = json.dumps({"degraded": count % 10 == 0}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer  # noqa: N815 (http.server's names)
        do_POST = _answer  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_soak_counts_errors_per_window_and_writes_json_and_plot(tmp_path: Path) -> None:
    rss = iter(range(1000, 2000, 10))
    with soak.image_server() as image_urls, stub_service() as (base_url, seen):
        assert httpx.get(image_urls[0]).headers["content-type"] == "image/jpeg"
        result = soak.soak_against(
            base_url, KEY, image_urls, lambda: {"rss_mb": float(next(rss))},
            duration_s=4.0, capacity_s=1.0, clients=4, load_fraction=0.5,
            window_s=1.0, warmup_s=1.0,
        )  # fmt: skip
    windows = result["windows"]
    assert [w["window"] for w in windows] == [0, 1, 2, 3]
    assert result["capacity"]["ok_per_s"] > 0
    assert result["target_rate_per_s"] == round(max(0.5, result["capacity"]["ok_per_s"] * 0.5), 2)
    # Every route of the mix was sent (seeding first), and trends' 500s count as errors.
    paths = set(seen)
    assert {"/api/v1/events/posts", "/api/v1/moderation/text", "/api/v1/trends"} <= paths
    trends_sent = sum(1 for path in seen if path == "/api/v1/trends")
    soak_requests = result["totals"]["requests"]
    assert 0 < soak_requests <= len(seen)
    assert result["totals"]["errors"] == sum(w["errors"] for w in windows) > 0
    assert trends_sent >= result["totals"]["errors"]
    assert all(set(w["errors_by_status"]) <= {"500"} for w in windows)
    assert result["totals"]["degraded"] > 0
    assert all(w["p50_ms"] is None or w["p50_ms"] <= w["p99_ms"] for w in windows)
    # Memory: one reading per window; growth from the first window after warm-up to the end.
    assert [w["rss_mb"] for w in windows] == sorted(w["rss_mb"] for w in windows)
    after = [w["rss_mb"] for w in windows if w["end_s"] > 1.0]
    assert result["memory"]["growth_pct"] == round((after[-1] - after[0]) / after[0] * 100, 2)
    png = soak.plot_soak(result, tmp_path / "soak.png")
    assert png is not None and png.read_bytes().startswith(b"\x89PNG")
    json.dumps(result)  # the result document is plain JSON
