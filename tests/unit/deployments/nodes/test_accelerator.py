"""What a node's /health says about its GPU (no Ray: Ray's answers are stubbed)."""

from __future__ import annotations

from typing import Any

import pytest
import ray

from deployments.nodes.base import accelerator_info


class _Context:
    def __init__(self, gpu: float) -> None:
        self.gpu = gpu

    def get_assigned_resources(self) -> dict[str, float]:
        return {"CPU": 0.1, "GPU": self.gpu}


def _ray(monkeypatch: pytest.MonkeyPatch, gpu_ids: list[Any], share: float) -> None:
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: gpu_ids)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: _Context(share))


def test_no_gpu_no_accelerator_part(monkeypatch: pytest.MonkeyPatch) -> None:
    assert accelerator_info("cpu") is None  # outside Ray
    _ray(monkeypatch, [], 0.0)
    assert accelerator_info("cpu") is None


def test_a_replica_with_a_gpu_share_says_where_its_model_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _ray(monkeypatch, [0], 0.25)
    on_gpu = accelerator_info("cuda:0")
    assert on_gpu == {"gpu_ids": ["0"], "gpu_share": 0.25, "device": "cuda:0"}
    fallback = accelerator_info("cpu")
    assert fallback is not None and fallback["device"] == "cpu"
    assert str(fallback["fallback"]).startswith("the replica holds a GPU but its model runs on")
    assert "CUDAExecutionProvider" in str(fallback["fallback"])
