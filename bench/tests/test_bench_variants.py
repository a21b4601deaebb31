"""Bench options that choose what is measured: Ray variants, W2's graph, the BentoML peer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench import bentoml_runner, embed_bench
from bench.run_all import _workloads
from bench.servers import REPO_ROOT, serve_config


def test_ray_variants_parse_ingress_and_coalescing_settings() -> None:
    args = embed_bench.parse_args(["--ray-variants", "proxy:off,haproxy:on/32/0.002/1"])
    assert args.ray_variants == [
        ("proxy", {"enabled": False}, {}),
        (
            "haproxy",
            {
                "enabled": True,
                "max_batch_size": 32,
                "batch_wait_timeout_s": 0.002,
                "max_concurrent_batches": 1,
            },
            {},
        ),
    ]
    assert args.onnx_variants == [("haproxy", {"enabled": True}, {})]


def test_variant_options_become_ray_env_log_level_and_node_batch_size() -> None:
    args = embed_bench.parse_args(["--ray-variants", "haproxy+nice0+tput+warn+nb16:on"])
    (ingress, coalesce, tuning) = args.ray_variants[0]
    assert (ingress, coalesce) == ("haproxy", {"enabled": True})
    assert tuning["env"] == {"RAY_worker_niceness": "0", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    assert tuning["log_level"] == "WARNING"
    config = embed_bench.embed_serve_config(8123, {"backend": "torch"}, coalesce, tuning)
    embedder = config["applications"][0]["deployments"][1]
    assert embedder["user_config"]["batching"]["max_batch_size"] == 16
    assert config["logging_config"]["log_level"] == "WARNING"
    # The shared defaults are not changed by one variant's tuning.
    assert embed_bench.EMBEDDER_SETTINGS["user_config"]["batching"]["max_batch_size"] == 32
    assert tuning["options"] == ["nice0", "tput", "warn", "nb16"]


@pytest.mark.parametrize(
    "variant",
    [
        "grpc:on",
        "proxy:maybe",
        "proxy:off/16/0.1/2",
        "proxy:on/16",
        "haproxy+fast:on",
        "haproxy+nb0:on",
        "haproxy+nicex:on",
    ],
)
def test_bad_ray_variants_are_refused(variant: str) -> None:
    with pytest.raises(SystemExit):
        embed_bench.parse_args(["--ray-variants", variant])


def test_the_front_gets_the_variant_coalescing_settings() -> None:
    config = embed_bench.embed_serve_config(8123, {"backend": "torch"}, {"enabled": False})
    assert config["applications"][0]["args"]["coalesce"] == {"enabled": False}


def test_w2_runs_only_its_own_graph_with_the_result_cache_off() -> None:
    w2 = _workloads(Path("/nonexistent"))["w2"]
    config = serve_config(REPO_ROOT / "serve_config.yaml", 8123, w2.app_args, w2.overrides)
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    assert set(deployments) == {"Ingress", "TextModeration", "Sentiment"}
    assert deployments["TextModeration"]["user_config"]["cache"] == {"enabled": False}
    # Without app args the shipped graph is kept whole.
    shipped = serve_config(REPO_ROOT / "serve_config.yaml", 8123)
    assert len(shipped["applications"][0]["deployments"]) > 3


def test_bentoml_service_source_is_valid_python_with_a_batchable_api() -> None:
    tree = ast.parse(bentoml_runner.SERVICE_SOURCE)
    names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "embed" in names
    assert "batchable=True" in bentoml_runner.SERVICE_SOURCE


def test_run_all_ingress_entries_take_ray_wide_options() -> None:
    from bench.run_all import parse_args

    args = parse_args(["--ray-ingress", "proxy,haproxy+tput", "--workloads", "w1"])
    assert args.ray_ingress == ["proxy", "haproxy+tput"]
    with pytest.raises(SystemExit):
        parse_args(["--ray-ingress", "haproxy+turbo", "--workloads", "w1"])
