"""One Ray instance and one Serve HTTP proxy per test session, on a free loopback port."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# Every scope (client, moderator, operator): the review and health-detail routes need them.
TEST_API_KEY = "test-key-0123456789"
# Replicas import the code of this checkout (a worktree too), not whatever is installed.
REPO_ROOT = Path(__file__).resolve().parents[2]
# The client scope only.
OTHER_API_KEY = "second-key-abcdef"
HASH_SECRET = "integration-hash-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The embedded text models, for modules that do not test the text models themselves: their
# graph starts without loading MiniLM twice. The shipped heads (the default kind) are served
# by test_http_default.py (serve_config.yaml as shipped).
EMBEDDED_TEXT_MODELS: dict[str, Any] = {
    "moderation_model": {"kind": "profanity"},
    "sentiment_model": {"kind": "vader"},
}


def embedded_args(**args: Any) -> Any:
    """``AppArgs`` with `args` on the embedded text models (alt-profanity-check, VADER)."""
    from configs.app import AppArgs

    return AppArgs.model_validate({**EMBEDDED_TEXT_MODELS, **args})


# Chosen at import: ray.init and the fixtures that hand the ports to tests need the same ones.
METRICS_PORT = _free_port()
GRPC_PORT = _free_port()
GRPC_SERVICER = "deployments.protos.ai_service_pb2_grpc.add_AIServiceServicer_to_server"
# The default HTTP body limit (limits.max_body_bytes).
GRPC_MAX_MESSAGE_BYTES = 1_048_576


@pytest.fixture(scope="session")
def serve_port() -> Iterator[int]:
    """Start Ray and Serve once; every integration test shares them."""
    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Read by Ray's gRPC proxy when it starts (a process of the cluster ray.init starts here,
    # so it inherits this environment): messages over the HTTP body limit are refused, as
    # deployments/launch.py sets it for `make serve`.
    os.environ.setdefault("RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", str(GRPC_MAX_MESSAGE_BYTES))
    # Metrics reach the export endpoint every 10 s by default; 1 s keeps the metrics test short.
    os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")
    # A short private temp dir: Ray's socket paths must stay under the Unix 107-byte limit,
    # and tests must not touch a developer's /tmp/ray session.
    temp_dir = tempfile.mkdtemp(prefix="sp-ray-", dir="/tmp")
    state_dir = tempfile.mkdtemp(prefix="sp-state-", dir="/tmp")
    ray.init(
        num_cpus=4,
        # One logical GPU (no CUDA behind it) for the GPU profile's test (test_http_images.py
        # deploys three nodes with its shares); no other test asks for a GPU.
        num_gpus=1,
        include_dashboard=False,
        # Prometheus text of Ray's and our metrics, on a known port (`metrics_url`).
        _metrics_export_port=METRICS_PORT,
        # Replica logs stay in the temp dir (printed on failure by the deploy helper).
        log_to_driver=False,
        _temp_dir=temp_dir,
        runtime_env={
            "env_vars": {
                "PYTHONPATH": str(REPO_ROOT),
                "API_KEYS": f"{TEST_API_KEY},{OTHER_API_KEY}",
                "MODERATOR_API_KEYS": TEST_API_KEY,
                "OPERATOR_API_KEYS": TEST_API_KEY,
                # The same secret as this process's: jobs run here hash as the replicas do.
                "SOCIALPLAY_HASH_SECRET": os.environ.setdefault(
                    "SOCIALPLAY_HASH_SECRET", HASH_SECRET
                ),
                "SOCIALPLAY_DEV_MODE": "0",
                "SOCIALPLAY_STATE_DIR": state_dir,
                "ALLOWED_ORIGINS": "http://app.example",
                "TOKENIZERS_PARALLELISM": "false",
                # Ray Train polls its workers every 2 s by default: most of a tiny fit().
                "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
            }
        },
    )
    port = _free_port()
    serve.start(
        http_options={"host": "127.0.0.1", "port": port},
        grpc_options=gRPCOptions(port=GRPC_PORT, grpc_servicer_functions=[GRPC_SERVICER]),
    )
    yield port
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def base_url(serve_port: int) -> str:
    return f"http://127.0.0.1:{serve_port}"


@pytest.fixture(scope="session")
def metrics_url(serve_port: int) -> str:
    """Ray's Prometheus metrics export endpoint of the session cluster."""
    return f"http://127.0.0.1:{METRICS_PORT}/metrics"


@pytest.fixture(scope="session")
def grpc_target(serve_port: int) -> str:
    """Serve's gRPC proxy (AIService) of the session cluster."""
    return f"127.0.0.1:{GRPC_PORT}"


def deploy(app: object, base_url: str, name: str = "socialplay") -> None:
    """``serve.run`` an app at ``/`` and wait until its /health answers."""
    from ray import serve

    serve.run(app, name=name, route_prefix="/", logging_config={"enable_access_log": False})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{name} did not answer /health within 60 s")


def health_detail(base_url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The detailed health report (``/api/v1/health``, an operator key's view)."""
    response = httpx.get(
        f"{base_url}/api/v1/health", headers={"X-API-Key": TEST_API_KEY}, timeout=timeout_s
    )
    report: dict[str, Any] = response.json()
    return report


def undeploy(name: str = "socialplay") -> None:
    from ray import serve

    serve.delete(name)


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=base_url, headers={"X-API-Key": TEST_API_KEY}, timeout=30
    ) as http_client:
        yield http_client


@pytest.fixture(scope="session")
def checkpoints_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")
