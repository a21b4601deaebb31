"""bench.plot: the PNG written next to a benchmark run's results.json (fake results, no servers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.plot import plot_results

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(connections: int, ok_per_s: float, p99_ms: float) -> dict[str, Any]:
    return {
        "connections": connections,
        "ok_per_s": ok_per_s,
        "latency_p50_ms": p99_ms / 2,
        "latency_p99_ms": p99_ms,
        "errors": 0,
        "degraded": 0,
    }


def _results(servers: dict[str, Any]) -> dict[str, Any]:
    return {
        "started_at": "2026-11-29T11:06:03+00:00",
        "workloads": {
            "w3-torch": {
                "title": "MiniLM embeddings, torch fp32",
                "offline": {"best": {"batch_size": 8, "texts_per_s": 255.0, "batch_ms": 31.4}},
                "servers": servers,
            }
        },
    }


def test_writes_png_with_repeated_runs_and_a_failed_setup(tmp_path: Path) -> None:
    results = _results(
        {
            "torchserve": {
                "label": "TorchServe (batch 32)",
                "settings": "defaults",
                # Two runs per connection count: plotted as mean with a min-max bar.
                "runs": [
                    _run(8, 180.0, 90.0),
                    _run(8, 190.0, 110.0),
                    _run(32, 200.0, 300.0),
                    _run(32, 210.0, 320.0),
                ],
            },
            "ray-torch": {
                "label": "Ray Serve (proxy → EmbedFront → Embedder)",
                "settings": "{}",
                "runs": [_run(8, 50.0, 400.0), _run(32, 53.0, 790.0)],
            },
            "ray-onnx": {"label": "Ray Serve (onnx)", "error": "server did not start"},
        }
    )
    out_png = tmp_path / "run" / "plot.png"

    written = plot_results(results, out_png)

    assert written == out_png
    assert out_png.read_bytes().startswith(PNG_SIGNATURE)


def test_no_successful_setup_returns_none_and_writes_nothing(tmp_path: Path) -> None:
    # Documented choice: nothing to draw -> None, no file (the tables report the failures).
    out_png = tmp_path / "plot.png"
    failed_only = _results({"ray-torch": {"label": "Ray Serve", "error": "boom"}})

    assert plot_results(failed_only, out_png) is None
    assert plot_results({"started_at": "x", "workloads": {}}, out_png) is None
    assert not out_png.exists()
