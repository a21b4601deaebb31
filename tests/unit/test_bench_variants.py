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
        ("proxy", {"enabled": False}),
        (
            "haproxy",
            {
                "enabled": True,
                "max_batch_size": 32,
                "batch_wait_timeout_s": 0.002,
                "max_concurrent_batches": 1,
            },
        ),
    ]
    assert args.onnx_variants == [("haproxy", {"enabled": True})]


@pytest.mark.parametrize("variant", ["grpc:on", "proxy:maybe", "proxy:off/16/0.1/2", "proxy:on/16"])
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
