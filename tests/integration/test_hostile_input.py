"""Hostile input against the running ingress (one deploy: text nodes and NSFW, no tagger).

The issue's attempts, repeated over HTTP: a triple-gzip bomb from an allowlisted host, a URL
with a control character, 5,000 nested JSON arrays. Each answers a 4xx naming the field, the
ingress replica's resident memory stays flat, and the service keeps answering.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from configs.app import AppArgs
from deployments.app import build_graph
from tests.fixtures.hostile_server import HostileServer, gzip_bomb, hostile_server
from tests.integration.conftest import deploy, undeploy

pytestmark = pytest.mark.integration

APP_NAME = "socialplay"
RSS_GROWTH_LIMIT_BYTES = 50 * 1024 * 1024
NESTED_ARRAYS = b"[" * 5000 + b"]" * 5000


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with hostile_server(gzip_bomb()) as running:
        yield running


@pytest.fixture(scope="module")
def hostile_app(base_url: str) -> Iterator[None]:
    args = AppArgs.model_validate({"nsfw_model": {"enabled": True, "num_threads": 1}})
    small = {"ray_actor_options": {"num_cpus": 0.1}}
    ingress = {
        **small,
        "user_config": {"images": {"allowed_hosts": ["127.0.0.1"], "total_timeout_s": 5.0}},
    }
    options = {
        "Ingress": ingress,
        "TextModeration": small,
        "Sentiment": small,
        "NsfwDetector": small,
    }
    deploy(build_graph(args, options), base_url, APP_NAME)
    yield
    undeploy(APP_NAME)


def _ingress_resident_bytes() -> int:
    """Resident memory of the (one) Ingress replica's process, read from its /proc."""
    import ray

    names = [
        entry["name"]
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if APP_NAME in entry["name"] and "Ingress" in entry["name"]
    ]
    assert len(names) == 1, names
    replica = ray.get_actor(names[0], namespace="serve")

    def resident(_actor: object) -> int:
        import os

        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    return int(ray.get(replica.__ray_call__.remote(resident)))


def test_hostile_bodies_get_4xx_and_memory_stays_flat(
    hostile_app: None, server: HostileServer, client: httpx.Client
) -> None:
    route = "/api/v1/moderation/image"
    good = client.post(route, json={"image_url": f"{server.base_url}/identity.png"})
    assert good.status_code == 200, good.text  # warm: fetcher, decoder, NSFW node
    before = _ingress_resident_bytes()
    for _ in range(5):
        bomb = client.post(route, json={"image_url": f"{server.base_url}/bomb.png"})
        assert bomb.status_code == 422, bomb.text
        assert bomb.json()["error"]["field"] == "image_url"
        assert bomb.json()["error"]["code"] == "image_compressed"
    growth = _ingress_resident_bytes() - before
    assert growth < RSS_GROWTH_LIMIT_BYTES, f"the ingress grew by {growth} bytes"
    assert server.accept_encodings[-1] == "identity"

    control = client.post(route, json={"image_url": "http://127.0.0.1:18231/a\u0001b.png"})
    assert control.status_code == 422, control.text
    assert control.json()["error"]["field"] == "image_url"

    for path in (route, "/api/v1/moderation/text"):
        nested = client.post(
            path, content=NESTED_ARRAYS, headers={"Content-Type": "application/json"}
        )
        assert nested.status_code == 400, f"{path}: {nested.text}"
        assert nested.json()["error"] == {
            "code": "json_too_deep",
            "message": nested.json()["error"]["message"],
            "field": "body",
        }

    again = client.post(route, json={"image_url": f"{server.base_url}/identity.png"})
    assert again.status_code == 200, again.text
