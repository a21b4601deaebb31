"""Bulk-route benchmark: the batch bodies file, run_all's bulk run and report's table.

No servers and no wrk: wrk and the server's process tree are replaced by fakes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from bench import loadgen, procs, report, run_all
from bench.posts import (
    DEFAULT_NUM_POSTS,
    generate_posts,
    write_batch_request_bodies,
    write_request_bodies,
)
from bench.servers import REPO_ROOT, Server, serve_config

TEXTS_PER_REQUEST = 16


def _read_bodies(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = text.splitlines()
    # post_bodies.lua sends each non-empty line verbatim: one compact JSON object per line.
    assert lines and all(lines)
    bodies = [json.loads(line) for line in lines]
    assert [json.dumps(body, separators=(",", ":")) for body in bodies] == lines
    return bodies


def test_batch_bodies_have_16_distinct_posts_per_line_and_cover_the_posts(
    tmp_path: Path,
) -> None:
    posts = generate_posts(DEFAULT_NUM_POSTS)

    path = write_batch_request_bodies(tmp_path / "bodies-batch16.jsonl", posts, TEXTS_PER_REQUEST)

    bodies = _read_bodies(path)
    for body in bodies:
        assert set(body) == {"texts"}
        texts = body["texts"]
        assert len(texts) == TEXTS_PER_REQUEST
        assert len(set(texts)) == TEXTS_PER_REQUEST
        assert all(isinstance(text, str) and text.strip() for text in texts)
    sent = Counter(text for body in bodies for text in body["texts"])
    assert len(sent) >= 500
    assert set(sent) == set(posts)
    # Every post is sent equally often, so no post weighs more in the throughput.
    assert len(set(sent.values())) == 1


def test_batch_bodies_wrap_around_a_short_post_list(tmp_path: Path) -> None:
    posts = generate_posts(20)

    bodies = _read_bodies(write_batch_request_bodies(tmp_path / "b.jsonl", posts, 16))

    # 20 and 16: five windows of 16 come back to the start, each post sent four times.
    assert len(bodies) == 5
    assert all(len(set(body["texts"])) == 16 for body in bodies)
    assert set(Counter(text for body in bodies for text in body["texts"]).values()) == {4}


@pytest.mark.parametrize("texts_per_request", [0, -1, 16])
def test_batch_bodies_reject_sizes_the_posts_cannot_fill(
    tmp_path: Path, texts_per_request: int
) -> None:
    with pytest.raises(ValueError, match="texts_per_request"):
        write_batch_request_bodies(tmp_path / "b.jsonl", generate_posts(15), texts_per_request)


def test_single_text_bodies_are_unchanged(tmp_path: Path) -> None:
    posts = generate_posts(30)

    bodies = _read_bodies(write_request_bodies(tmp_path / "bodies.jsonl", posts))

    assert bodies == [{"text": post} for post in posts]


def test_batch_texts_option() -> None:
    assert run_all.parse_args([]).batch_texts == 16
    assert run_all.parse_args(["--batch-texts", "0"]).batch_texts == 0
    with pytest.raises(SystemExit):
        run_all.parse_args(["--batch-texts", "-1"])


def test_max_batch_texts_is_read_from_the_shipped_serve_config() -> None:
    config = serve_config(REPO_ROOT / "serve_config.yaml", 8123)

    assert run_all._max_batch_texts(config) == 64
    assert run_all._max_batch_texts({"applications": [{"deployments": []}]}) is None


class _FakeTree:
    def cpu_times_s(self) -> dict[int, float]:
        return {}

    def cores_by_label(
        self, before: dict[int, float], after: dict[int, float], wall_s: float
    ) -> dict[str, float]:
        return {"ray::ServeReplica:socialplay:Ingress": 0.5}

    def memory(self) -> dict[str, float]:
        return {"rss_mb": 100.0, "pss_mb": 90.0, "processes": 3}


class _FakeServer:
    name = "ray-serve"
    base_url = "http://127.0.0.1:8123"

    def __init__(self) -> None:
        self.tree: _FakeTree | None = None
        self.startup_s: float | None = None
        self.health: dict[str, Any] = {}
        self.starts = 0
        self.stops = 0

    def start(self) -> None:
        self.starts += 1
        self.tree, self.startup_s, self.health = _FakeTree(), 1.5, {"status": "ok"}

    def stop(self) -> list[str]:
        self.stops += 1
        return []


def _fake_wrk(calls: list[tuple[str, Path, int]]) -> Callable[..., loadgen.WrkResult]:
    def run_wrk(
        base_url: str,
        route: str,
        bodies_file: Path,
        api_key: str,
        connections: int,
        duration_s: float,
        threads: int = 2,
        request_timeout_s: float = 10.0,
    ) -> loadgen.WrkResult:
        calls.append((route, bodies_file, connections))
        # run_all divides by the run's wall time: let some pass.
        time.sleep(0.001)
        ok_2xx = 50 if route == run_all.BATCH_ROUTE else 400
        return loadgen.WrkResult(
            connections=connections, threads=2, duration_s=10.0, requests=ok_2xx,
            ok_2xx=ok_2xx, degraded=0, status_4xx=0, status_5xx=0, status_other=0,
            socket_errors=0, timeouts=0, latency_p50_ms=20.0, latency_p90_ms=30.0,
            latency_p99_ms=40.0, latency_max_ms=50.0, wrk_cpu_s=0.1,
        )  # fmt: skip

    return run_wrk


def test_measure_server_runs_the_bulk_route_on_the_same_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Path, int]] = []
    monkeypatch.setattr(loadgen, "run_wrk", _fake_wrk(calls))
    monkeypatch.setattr(procs, "machine_busy_s", lambda: 0.0)
    server = _FakeServer()
    bodies, batch_bodies = tmp_path / "bodies.jsonl", tmp_path / "bodies-batch16.jsonl"

    outcome = run_all.measure_server(
        cast(Server, server), bodies, "key", [8, 32], 10.0, 1.0, 30.0,
        batch_bodies=batch_bodies, texts_per_request=TEXTS_PER_REQUEST,
    )  # fmt: skip

    assert (server.starts, server.stops) == (1, 1)
    assert [run["connections"] for run in outcome["runs"]] == [8, 32]
    (batch_run,) = outcome["batch_runs"]
    assert set(outcome["runs"][0]) < set(batch_run)
    assert batch_run["connections"] == 32
    assert batch_run["route"] == run_all.BATCH_ROUTE
    assert batch_run["texts_per_request"] == TEXTS_PER_REQUEST
    assert batch_run["ok_per_s"] == pytest.approx(5.0)
    assert batch_run["texts_per_s"] == pytest.approx(80.0)
    # Warm-up and measured run of the bulk route come last, with its own bodies.
    assert calls[-2:] == [(run_all.BATCH_ROUTE, batch_bodies, 32)] * 2
    assert all(route == run_all.ROUTE for route, _, _ in calls[:-2])


def test_measure_server_without_batch_bodies_measures_the_single_route_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Path, int]] = []
    monkeypatch.setattr(loadgen, "run_wrk", _fake_wrk(calls))
    monkeypatch.setattr(procs, "machine_busy_s", lambda: 0.0)

    # Positional call as bench.embed_bench makes it, route included.
    outcome = run_all.measure_server(
        cast(Server, _FakeServer()), tmp_path / "b.jsonl", "key", [8], 10.0, 1.0, 30.0,
        "/api/v1/embed",
    )  # fmt: skip

    assert "batch_runs" not in outcome
    assert {route for route, _, _ in calls} == {"/api/v1/embed"}


def test_a_failed_bulk_run_keeps_the_single_text_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Path, int]] = []
    single_route_wrk = _fake_wrk(calls)

    def run_wrk(base_url: str, route: str, *args: Any, **kwargs: Any) -> loadgen.WrkResult:
        if route == run_all.BATCH_ROUTE:
            raise loadgen.LoadGenError("wrk exited with code 1\nstderr tail")
        return single_route_wrk(base_url, route, *args, **kwargs)

    monkeypatch.setattr(loadgen, "run_wrk", run_wrk)
    monkeypatch.setattr(procs, "machine_busy_s", lambda: 0.0)
    server = _FakeServer()

    outcome = run_all.measure_server(
        cast(Server, server), tmp_path / "b.jsonl", "key", [8], 10.0, 1.0, 30.0,
        batch_bodies=tmp_path / "bb.jsonl", texts_per_request=TEXTS_PER_REQUEST,
    )  # fmt: skip

    assert len(outcome["runs"]) == 1
    assert outcome["batch_runs"] == []
    assert outcome["batch_error"] == "wrk exited with code 1"
    assert server.stops == 1


def _run(connections: int, ok_per_s: float) -> dict[str, Any]:
    return {
        "connections": connections,
        "ok_per_s": ok_per_s,
        "latency_p50_ms": 20.0,
        "latency_p99_ms": 40.0,
        "errors": 0,
        "degraded": 0,
        "memory": {"rss_mb": 100.0, "pss_mb": 90.0, "processes": 3},
        "cores_by_process": {"python": 1.0},
        "wrk_cores": 0.01,
        "other_cores": 0.0,
    }


def _results(ray_serve_extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "started_at": "2026-11-29T12:00:00+00:00",
        "mode": "quick",
        "duration_s": 5.0,
        "warmup_s": 2.0,
        "command": "python -m bench.run_all --quick",
        "machine": {
            "nproc": 2,
            "cpu_model": "test CPU",
            "ram_gib": 8.0,
            "python": "3.12",
            "ray": "2.x",
            "torch": "2.x",
            "wrk": "wrk 4.2.0",
        },
        "raw_path": "bench/results/run-x/results.json",
        "workloads": {
            "w1": {
                "title": "per-request overhead",
                "description": "Single-text route.",
                "offline": {
                    "best": {"batch_size": 64, "texts_per_s": 1000.0, "batch_ms": 64.0},
                    "by_batch_size": [{"batch_size": 64, "texts_per_s": 1000.0, "batch_ms": 64.0}],
                },
                "servers": {
                    "fastapi-baseline": {
                        "label": "FastAPI baseline",
                        "settings": "one worker",
                        "startup_s": 2.0,
                        "runs": [_run(8, 300.0)],
                    },
                    "ray-serve": {
                        "label": "Ray Serve graph (proxy)",
                        "settings": "as shipped",
                        "startup_s": 12.0,
                        "runs": [_run(8, 150.0)],
                        **ray_serve_extra,
                    },
                },
            }
        },
    }


def test_report_renders_the_bulk_route_table() -> None:
    batch_run = {
        **_run(8, 25.0),
        "route": "/api/v1/moderation/batch",
        "texts_per_request": 16,
        "texts_per_s": 400.0,
    }

    markdown = report.results_markdown(_results({"batch_runs": [batch_run]}))

    assert "Bulk route: `POST /api/v1/moderation/batch`" in markdown
    assert (
        "| setup | connections | texts per request | requests/s | texts/s | p50 ms | p99 ms "
        "| errors | texts/s ratio to offline ceiling |"
    ) in markdown
    assert "| Ray Serve graph (proxy) | 8 | 16 | 25.0 | 400.0 | 20.0 | 40.0 | 0 | 0.40 |" in (
        markdown
    )
    # Only the server that has bulk runs gets a row.
    bulk_block = markdown.split("Bulk route:", 1)[1].split("\n\n", 2)[1]
    assert "FastAPI baseline" not in bulk_block


def test_report_shows_a_failed_bulk_run() -> None:
    markdown = report.results_markdown(
        _results({"batch_runs": [], "batch_error": "wrk exited with code 1"})
    )

    assert "| Ray Serve graph (proxy) | — | — | failed: wrk exited with code 1 |" in markdown


def test_report_without_batch_runs_has_no_bulk_table() -> None:
    results = _results({})

    markdown = report.results_markdown(results)

    assert report.batch_table(results["workloads"]["w1"]) == ""
    assert "Bulk route" not in markdown
    assert "texts per request" not in markdown
