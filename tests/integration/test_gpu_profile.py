"""The GPU profile on a CPU machine: Ray started with one logical GPU (tests/integration/
conftest.py), three model nodes deployed with serve_config.gpu.yaml's shares (0.25 + 0.25 +
0.5), packed onto that one GPU, each model falling back to the CPU and saying why in
/api/v1/health. No CUDA here, so no speed is measured (docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from configs.profiles import load_profile
from deployments.app import build_graph
from tests.integration.conftest import deploy, embedded_args, health_detail, undeploy

pytestmark = pytest.mark.integration

APP = "gpu-profile"
PROFILE = Path(__file__).resolve().parents[2] / "serve_config.gpu.yaml"
# Two text nodes and one image node: their shares fill exactly one GPU.
NODES = {"TextModeration": "moderation", "Sentiment": "sentiment", "NsfwDetector": "nsfw"}


@pytest.fixture(scope="module")
def gpu_app(base_url: str) -> Iterator[dict[str, float]]:
    profile = load_profile(PROFILE)
    shares = {name: profile.deployments[name].ray_actor_options.num_gpus for name in NODES}
    options = {
        name: {"ray_actor_options": {"num_cpus": 0.1, "num_gpus": share}}
        for name, share in shares.items()
    }
    options["Ingress"] = {"ray_actor_options": {"num_cpus": 0.1}}
    graph = build_graph(embedded_args(nsfw_model={"enabled": True}), options)
    deploy(graph, base_url, name=APP)
    yield shares
    undeploy(APP)


def test_the_profiles_shares_pack_onto_one_gpu_and_models_fall_back_to_cpu(
    gpu_app: dict[str, float], base_url: str
) -> None:
    import ray

    assert sum(gpu_app.values()) == pytest.approx(1.0)
    assert ray.cluster_resources()["GPU"] == 1.0
    nodes = health_detail(base_url)["nodes"]
    assigned = 0.0
    for deployment, key in NODES.items():
        accelerator = nodes[key]["accelerator"]
        # Every replica sits on the one logical GPU, with the share the profile gives it.
        assert accelerator["gpu_ids"] == ["0"], deployment
        assert accelerator["gpu_share"] == pytest.approx(gpu_app[deployment]), deployment
        assigned += accelerator["gpu_share"]
        # No CUDA on this machine: the model runs on the CPU, and /health says why.
        assert accelerator["device"] == "cpu" == nodes[key]["device"]
        assert "runs on the CPU" in accelerator["fallback"]
        assert "CPU build" in accelerator["fallback"], accelerator["fallback"]
    assert assigned == pytest.approx(1.0)
    # The whole GPU is reserved: a fourth share would wait for another GPU.
    assert ray.available_resources().get("GPU", 0.0) == pytest.approx(0.0)

