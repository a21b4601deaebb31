"""PNG plot of a benchmark run: throughput and p99 latency against connections.

    from bench.plot import plot_results
    plot_results(json.loads(Path("bench/results/<run>/results.json").read_text()),
                 Path("/tmp/plot.png"))

One row per workload that has at least one successful server setup: on the left, req/s
against connections with the offline ceiling (texts/s, best batch size) as a dashed line; on
the right, p99 latency in ms. Each server setup is one line (legend = its label); where a
connection count was measured more than once, the point is the mean and the error bar spans
min to max. Setups that failed (an ``error`` instead of ``runs``) are left out; the markdown
tables already report them.

matplotlib comes with the bench extra (``pip install -e ".[bench]"``), not with the service,
so the import happens inside ``plot_results``, which returns None when it is missing.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

PANEL_WIDTH_IN = 7.0
ROW_HEIGHT_IN = 5.0


def _by_connections(
    runs: list[dict[str, Any]], metric: str
) -> list[tuple[int, float, float, float]]:
    """(connections, mean, min, max) of `metric` for each connection count, sorted."""
    values_by_connections: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        values_by_connections[int(run["connections"])].append(float(run[metric]))
    return [
        (connections, sum(values) / len(values), min(values), max(values))
        for connections, values in sorted(values_by_connections.items())
    ]


def _successful_servers(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        key: server
        for key, server in workload.get("servers", {}).items()
        if "error" not in server and server.get("runs")
    }


def plot_results(results: dict[str, Any], out_png: Path) -> Path | None:
    """Draw throughput and p99 latency against connections for every workload of a run.

    `results` is the dict written to ``results.json`` by ``bench.run_all`` or
    ``bench.embed_bench``. Returns `out_png` once written, or None (and writes nothing) when
    matplotlib is not installed or when no workload has a successful server setup, since a
    figure of empty axes would say nothing the tables do not.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None

    workloads = {
        name: workload
        for name, workload in results.get("workloads", {}).items()
        if _successful_servers(workload)
    }
    if not workloads:
        return None

    # A bare Figure on an Agg canvas rather than pyplot: no global backend switch and no
    # figure registry, so callers that already use pyplot (a notebook) are left alone.
    figure = Figure(
        figsize=(2 * PANEL_WIDTH_IN, ROW_HEIGHT_IN * len(workloads)), layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes_rows = figure.subplots(len(workloads), 2, squeeze=False)
    colors = [f"C{index}" for index in range(10)]

    for (name, workload), (throughput_ax, latency_ax) in zip(
        workloads.items(), axes_rows, strict=True
    ):
        connection_ticks: set[int] = set()
        for index, (key, server) in enumerate(_successful_servers(workload).items()):
            color = colors[index % len(colors)]
            label = server.get("label", key)
            for ax, metric in ((throughput_ax, "ok_per_s"), (latency_ax, "latency_p99_ms")):
                points = _by_connections(server["runs"], metric)
                connections = [point[0] for point in points]
                means = [point[1] for point in points]
                below = [point[1] - point[2] for point in points]
                above = [point[3] - point[1] for point in points]
                ax.errorbar(
                    connections, means, yerr=[below, above], color=color, marker="o",
                    capsize=4, label=label,
                )  # fmt: skip
                connection_ticks.update(connections)

        best = workload.get("offline", {}).get("best")
        if best:
            throughput_ax.axhline(
                float(best["texts_per_s"]), color="black", linestyle="--", linewidth=1.2,
                label=f"offline ceiling, batch {best['batch_size']} "
                f"({float(best['texts_per_s']):.0f} texts/s)",
            )  # fmt: skip

        title = f"{name}: {workload.get('title', '')}".rstrip(": ")
        throughput_ax.set_title(f"{title} — throughput")
        throughput_ax.set_ylabel("req/s (2xx)")
        latency_ax.set_title(f"{title} — p99 latency")
        latency_ax.set_ylabel("p99 latency (ms)")
        for ax in (throughput_ax, latency_ax):
            ax.set_xlabel("connections")
            ax.set_xticks(sorted(connection_ticks))
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
        # Labels are long (a whole serving route), so the legend sits under the row instead
        # of covering the lines; the latency panel has the same lines and needs none.
        throughput_ax.legend(
            loc="upper left", bbox_to_anchor=(0.0, -0.14), fontsize="small", frameon=False
        )

    figure.suptitle(f"Benchmark run of {results.get('started_at', '?')}", fontsize="x-large")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=100)
    return out_png
