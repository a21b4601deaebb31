"""One Ray instance and one Serve HTTP proxy per test session, on a free loopback port."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

TEST_API_KEY = "test-key-0123456789"
OTHER_API_KEY = "second-key-abcdef"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def serve_port() -> Iterator[int]:
    """Start Ray and Serve once; every integration test shares them."""
    import ray
    from ray import serve

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # A short private temp dir: Ray's socket paths must stay under the Unix 107-byte limit,
    # and tests must not touch a developer's /tmp/ray session.
    temp_dir = tempfile.mkdtemp(prefix="sp-ray-", dir="/tmp")
    state_dir = tempfile.mkdtemp(prefix="sp-state-", dir="/tmp")
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        # Replica logs stay in the temp dir (printed on failure by the deploy helper).
        log_to_driver=False,
        _temp_dir=temp_dir,
        runtime_env={
            "env_vars": {
                "API_KEYS": f"{TEST_API_KEY},{OTHER_API_KEY}",
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
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def base_url(serve_port: int) -> str:
    return f"http://127.0.0.1:{serve_port}"


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
