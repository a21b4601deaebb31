"""Replica processes import only what they use: every replica pays for its module's imports
in start-up time and memory (docs/benchmarks.md, "Lean replica processes")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[4]
MODEL_FRAMEWORKS = ("torch", "transformers", "mlflow", "sklearn", "onnxruntime")


def _loaded_after_import(module: str) -> list[str]:
    # A fresh interpreter: this test process has imported the frameworks already.
    probe = (
        "import json, sys\n"
        f"import {module}\n"
        f"print(json.dumps([m for m in {MODEL_FRAMEWORKS!r} if m in sys.modules]))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded: list[str] = json.loads(completed.stdout.strip().splitlines()[-1])
    return loaded


def test_the_ingress_loads_no_model_framework() -> None:
    # It routes, validates and answers degraded: no model runs in its process.
    loaded = _loaded_after_import("deployments.ingress.deployment")
    assert loaded == [], f"the ingress module imports {loaded}; import them in the nodes only"


@pytest.mark.parametrize(
    "module", ["deployments.nodes.text_classifier", "deployments.nodes.embedder"]
)
def test_text_nodes_load_mlflow_only_when_a_registry_is_configured(module: str) -> None:
    loaded = _loaded_after_import(module)
    assert "torch" in loaded, "the probe must see what the node really imports"
    assert "mlflow" not in loaded, f"{module} imports MLflow at start-up"
