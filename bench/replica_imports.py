"""What each replica process pays for its module's imports: wall time and peak RSS of a fresh
interpreter that imports the module a Serve replica of that deployment imports.

Two checkouts in one run, interleaved round by round, so a busy machine weighs on both alike:

    python -m bench.replica_imports --baseline-root /tmp/sp-before --rounds 5 \
        --results bench/results/replica_imports.json

`--baseline-root` is a checkout of the commit to compare with (``git worktree add``); without
it only this checkout is measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.report import emit_json

REPO_ROOT = Path(__file__).resolve().parents[1]
# The module of each deployment's class (what a replica process imports to run it).
REPLICA_MODULES = {
    "Ingress": "deployments.ingress.deployment",
    "TextModeration / Sentiment": "deployments.nodes.text_classifier",
    "Embedder": "deployments.nodes.embedder",
    "SmartReply": "deployments.nodes.replies",
    "Recommender": "deployments.nodes.recommender",
}
FRAMEWORKS = ("torch", "transformers", "mlflow", "sklearn", "onnxruntime")
_PROBE = """
import json, resource, sys, time
started = time.perf_counter()
import {module}
print(json.dumps({{
    "import_s": time.perf_counter() - started,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "frameworks": [m for m in {frameworks!r} if m in sys.modules],
}}))
"""


def measure(root: Path, module: str) -> dict[str, Any]:
    """One fresh interpreter importing `module` from the checkout at `root`."""
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, frameworks=FRAMEWORKS)],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Measure every replica module in both checkouts and print the medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline-root", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--results", type=Path, default=None)
    options = parser.parse_args()
    roots = {"current": REPO_ROOT}
    if options.baseline_root is not None:
        roots["baseline"] = options.baseline_root.resolve()
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {label: [] for label in roots} for name in REPLICA_MODULES
    }
    for _ in range(options.rounds):
        for name, module in REPLICA_MODULES.items():
            for label, root in roots.items():
                samples[name][label].append(measure(root, module))
    rows: dict[str, Any] = {}
    for name, by_label in samples.items():
        row: dict[str, Any] = {"module": REPLICA_MODULES[name]}
        for label, runs in by_label.items():
            row[label] = {
                "import_s_median": statistics.median(r["import_s"] for r in runs),
                "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in runs),
                "frameworks": runs[-1]["frameworks"],
            }
        if "baseline" in row:
            for key in ("import_s_median", "peak_rss_mb_median"):
                row[f"{key}_ratio"] = row["current"][key] / row["baseline"][key]
        rows[name] = row
    emit_json({"rounds": options.rounds, "replicas": rows}, options.results)


if __name__ == "__main__":
    main()
