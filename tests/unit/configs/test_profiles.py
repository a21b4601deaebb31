"""The GPU profile (serve_config.gpu.yaml) and how the launcher applies a profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from configs.app import AppArgs
from configs.ingress import IngressConfig
from configs.nodes import ModelNodeConfig
from configs.profiles import ServeProfile, apply_profile, gpu_shares, load_profile
from deployments.launch import profiled_config

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVE_CONFIG = REPO_ROOT / "serve_config.yaml"
GPU_PROFILE = REPO_ROOT / "serve_config.gpu.yaml"
TEXT_NODES = {"TextModeration", "Sentiment", "Embedder", "SmartReply"}
IMAGE_GPU_NODES = {"NsfwDetector", "ImageTagger"}
MODEL_NODES = TEXT_NODES | IMAGE_GPU_NODES | {"ObjectDetector"}


def _base() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(SERVE_CONFIG.read_text(encoding="utf-8"))
    return config


def _deployments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [application] = config["applications"]
    return {d["name"]: d for d in application["deployments"]}


def test_every_deployment_of_serve_config_is_in_the_gpu_profile() -> None:
    profile = load_profile(GPU_PROFILE)
    assert profile.name == "gpu"
    assert set(profile.deployments) == set(_deployments(_base()))


def test_gpu_shares_a_quarter_each_to_the_text_encoder_aspects_and_image_nodes() -> None:
    profile = load_profile(GPU_PROFILE)
    shares = {name: o.ray_actor_options.num_gpus for name, o in profile.deployments.items()}
    # One text encoder (text_vectors.encoder: shared): the Embedder runs MiniLM for all.
    assert shares["Embedder"] == 0.25 and shares["AspectSentiment"] == 0.25
    assert {shares[name] for name in IMAGE_GPU_NODES} == {0.25}
    assert profile.gpus == 1.0
    # The heads and smart replies rank the Embedder's vectors on the CPU; OpenCV's wheel has
    # no CUDA; nodes without a neural model hold no GPU.
    assert {name for name, share in shares.items() if share == 0} == {
        "Ingress",
        "ObjectDetector",
        "Recommender",
        "Trends",
        "TextModeration",
        "Sentiment",
        "SmartReply",
    }
    applied = apply_profile(_base(), profile)
    assert sum(gpu_shares(applied).values()) == pytest.approx(profile.gpus)
    # The CPU default stays CPU-only: the profile is the only place GPUs are asked for.
    assert sum(gpu_shares(_base()).values()) == 0


def test_the_applied_gpu_config_is_a_valid_serve_config_with_fillable_batches() -> None:
    applied = apply_profile(_base(), load_profile(GPU_PROFILE))
    [application] = applied["applications"]
    AppArgs.model_validate(application["args"])
    deployments = _deployments(applied)
    IngressConfig.model_validate(deployments["Ingress"]["user_config"])
    for name in MODEL_NODES:
        node = ModelNodeConfig.model_validate(deployments[name].get("user_config") or {})
        assert deployments[name]["max_ongoing_requests"] >= node.batching.max_batch_size, name
    base = _deployments(_base())
    # What the profile does not set comes from serve_config.yaml unchanged.
    assert deployments["TextModeration"]["user_config"]["cache"] == (
        base["TextModeration"]["user_config"]["cache"]
    )
    assert deployments["TextModeration"]["ray_actor_options"]["num_cpus"] == (
        base["TextModeration"]["ray_actor_options"]["num_cpus"]
    )
    assert deployments["TextModeration"]["user_config"]["batching"]["max_batch_size"] == 128
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(applied)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"deployments": {"TextModeratoin": {"ray_actor_options": {"num_gpus": 0.25}}}}, None),
        ({"deployments": {"Sentiment": {"ray_actor_options": {"num_gpus": 1.5}}}}, "num_gpus"),
        ({"deployments": {"Sentiment": {"ray_actor_options": {"gpus": 0.5}}}}, "gpus"),
        ({"replicas": 2}, "replicas"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_field(
    change: dict[str, Any], message: str | None
) -> None:
    raw = {"name": "t", "description": "test", "gpus": 1.0, "deployments": {}, **change}
    if message is None:
        profile = ServeProfile.model_validate(raw)
        with pytest.raises(ValueError, match=r"\['TextModeratoin'\].*use names from"):
            apply_profile(_base(), profile)
    else:
        with pytest.raises(ValueError, match=message):
            ServeProfile.model_validate(raw)


def test_the_launcher_serves_the_applied_profile(tmp_path: Path) -> None:
    written, summary = profiled_config(SERVE_CONFIG, "gpu", tmp_path)
    assert written.parent == tmp_path and "1 GPU(s)" in summary
    applied = yaml.safe_load(written.read_text(encoding="utf-8"))
    assert applied == apply_profile(_base(), load_profile(GPU_PROFILE))
    with pytest.raises(SystemExit, match="--profile tpu: .*cannot be read"):
        profiled_config(SERVE_CONFIG, "tpu", tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndescription: x\ngpus: 1\n"
        "deployments: {Nope: {ray_actor_options: {num_gpus: 1}}}\n"
    )
    with pytest.raises(SystemExit, match="Nope"):
        profiled_config(SERVE_CONFIG, str(bad), tmp_path)
