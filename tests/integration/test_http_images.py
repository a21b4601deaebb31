"""Image routes over HTTP under serve.run: one deploy (NSFW + tiny CLIP tagger + the embedded
yolov3-tiny object detector) for the module.

The hostile-input attempts of issue 15 (a triple-gzip bomb from an allowlisted host, a URL
with a control character, 5,000 nested JSON arrays) run here too, on the same deploy.

A local image server on 127.0.0.1 (allowlisted in the ingress config) serves good and hostile
files; every bad input gets its 4xx and the service keeps answering.

NsfwDetector and ImageTagger are deployed with the GPU profile's shares
(serve_config.gpu.yaml) on the session's one logical GPU: the profile's CPU-machine test
runs on this deploy instead of paying for one of its own.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from configs.app import AppArgs
from configs.profiles import load_profile
from deployments.app import build_graph
from models.images import encode_jpeg, encode_png
from tests.fixtures.hostile_server import HostileServer, gzip_bomb, hostile_server
from tests.fixtures.image_server import ImageServer, image_server, silent_port
from tests.fixtures.images import noise_image
from tests.integration.conftest import EMBEDDED_TEXT_MODELS, deploy, health_detail, undeploy

pytestmark = pytest.mark.integration

RSS_GROWTH_LIMIT_BYTES = 50 * 1024 * 1024
NESTED_ARRAYS = b"[" * 5000 + b"]" * 5000
APP_NAME = "socialplay"
TAGS = ["food", "beach", "people", "selfie", "group photo", "music"]


@pytest.fixture(scope="module")
def server() -> Iterator[ImageServer]:
    with image_server() as running:
        yield running


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with hostile_server(gzip_bomb()) as running:
        yield running


@pytest.fixture(scope="module")
def silent() -> Iterator[int]:
    with silent_port() as port:
        yield port


@pytest.fixture(scope="module")
def images_app(base_url: str, tiny_clip_checkpoint: Path) -> Iterator[None]:
    args = AppArgs.model_validate(
        {
            **EMBEDDED_TEXT_MODELS,
            "nsfw_model": {"enabled": True, "num_threads": 1},
            "tagger_model": {
                "enabled": True,
                "path": str(tiny_clip_checkpoint),
                "device": "cpu",
                "tags": TAGS,
                "top_k": 2,
            },
            "detector_model": {"enabled": True, "num_threads": 1},
        }
    )
    small = {"ray_actor_options": {"num_cpus": 0.1}}
    ingress = {
        **small,
        "user_config": {
            "images": {
                "allowed_hosts": ["127.0.0.1"],
                "connect_timeout_s": 1.0,
                "read_timeout_s": 1.0,
                "total_timeout_s": 5.0,
                "max_images_per_post": 3,
            }
        },
    }
    options = {
        "Ingress": ingress,
        "ObjectDetector": small,
        # The GPU profile's shares on the session's one logical GPU (no CUDA behind it): see
        # test_the_gpu_profiles_shares_pack_onto_one_gpu_and_models_fall_back_to_cpu.
        **{
            name: {"ray_actor_options": {"num_cpus": 0.1, "num_gpus": share}}
            for name, share in gpu_profile_shares().items()
        },
    }
    deploy(build_graph(args, options), base_url)
    yield
    undeploy()


# The image model nodes of serve_config.gpu.yaml (the Embedder's half is not in this app).
GPU_PROFILE_NODES = {
    "NsfwDetector": "nsfw",
    "ImageTagger": "tagger",
}


def gpu_profile_shares() -> dict[str, float]:
    """The GPU profile's shares of `GPU_PROFILE_NODES` (0.25 + 0.25)."""
    profile = load_profile(Path(__file__).resolve().parents[2] / "serve_config.gpu.yaml")
    deployments = profile.deployments
    return {name: deployments[name].ray_actor_options.num_gpus for name in GPU_PROFILE_NODES}


def _check_image_result(body: dict[str, Any], width: int, height: int) -> None:
    assert body["action"] in {"approve", "flag_for_review", "reject"}
    assert body["is_safe"] == (body["action"] == "approve")
    scores = body["scores"]
    assert sum(scores.values()) == pytest.approx(1.0)
    assert body["image"]["width"] == width and body["image"]["height"] == height
    assert body["model"]["name"] == "nudenet-320n" and body["degraded"] is False
    for detection in body["detections"]:
        x, y, w, h = detection["box"]
        assert 0 <= x <= width and 0 <= y <= height and w >= 0 and h >= 0


def test_health_lists_the_image_nodes(images_app: None, base_url: str) -> None:
    nodes = health_detail(base_url)["nodes"]
    assert nodes["nsfw"]["status"] == "ok" and nodes["nsfw"]["name"] == "nudenet-320n"
    assert nodes["tagger"]["status"] == "ok" and nodes["tagger"]["labels"] == TAGS
    assert nodes["detector"]["status"] == "ok" and nodes["detector"]["name"] == "yolov3-tiny"
    assert len(nodes["detector"]["labels"]) == 80


def test_the_gpu_profiles_shares_pack_onto_one_gpu_and_models_fall_back_to_cpu(
    images_app: None, base_url: str
) -> None:
    # The session's Ray has one logical GPU and no CUDA (tests/integration/conftest.py).
    import ray

    shares = gpu_profile_shares()
    assert sum(shares.values()) == pytest.approx(0.5)
    assert ray.cluster_resources()["GPU"] == 1.0
    nodes = health_detail(base_url)["nodes"]
    for deployment, key in GPU_PROFILE_NODES.items():
        accelerator = nodes[key]["accelerator"]
        # Every replica sits on the one GPU with the share the profile gives it.
        assert accelerator["gpu_ids"] == ["0"], deployment
        assert accelerator["gpu_share"] == pytest.approx(shares[deployment]), deployment
        # No CUDA here: the model runs on the CPU, and /health says why.
        assert accelerator["device"] == "cpu" == nodes[key]["device"], deployment
        assert "runs on the CPU" in accelerator["fallback"]
        assert "CPU build" in accelerator["fallback"], accelerator["fallback"]
    # Nodes without a share hold no GPU and show no accelerator part.
    assert "accelerator" not in nodes["detector"] and "accelerator" not in nodes["moderation"]
    # Exactly the profile's shares are reserved on the one GPU.
    assert ray.available_resources().get("GPU", 0.0) == pytest.approx(1.0 - sum(shares.values()))


def test_moderate_image_by_url_base64_and_upload_agree(
    images_app: None, client: httpx.Client, server: ImageServer
) -> None:
    url = f"{server.base_url}/face.jpg"
    by_url = client.post("/api/v1/moderation/image", json={"image_url": url})
    assert by_url.status_code == 200, by_url.text
    jpeg = httpx.get(f"{server.base_url}/face.jpg").content
    _check_image_result(by_url.json(), 240, 320)
    by_b64 = client.post(
        "/api/v1/moderation/image", json={"image_base64": base64.b64encode(jpeg).decode()}
    )
    upload = client.post(
        "/api/v1/moderation/image", files={"file": ("face.jpg", jpeg, "image/jpeg")}
    )
    for other in (by_b64, upload):
        assert other.status_code == 200, other.text
        assert other.json()["scores"] == pytest.approx(by_url.json()["scores"], abs=1e-4)


def test_image_body_limit_is_its_own(images_app: None, client: httpx.Client) -> None:
    # ~2.3 MB of base64: over the 1 MB text body limit, under max_image_body_bytes.
    png = encode_png(noise_image(11, 700, 1100))
    assert len(png) > 1_500_000
    response = client.post(
        "/api/v1/moderation/image", json={"image_base64": base64.b64encode(png).decode()}
    )
    assert response.status_code == 200, response.text
    _check_image_result(response.json(), 1100, 700)


def test_tags_with_clip_and_faces(
    images_app: None, client: httpx.Client, server: ImageServer
) -> None:
    response = client.post(
        "/api/v1/image/tags", json={"image_url": f"{server.base_url}/face.jpg", "top_k": 3}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    clip_tags = [t for t in body["tags"] if "clip" in t["sources"]]
    assert len(clip_tags) == 3 and all(t["tag"] in TAGS for t in body["tags"])
    scores = [t["score"] for t in clip_tags]
    assert scores == sorted(scores, reverse=True)
    assert body["faces"]["count"] == 1
    face_backed = {t["tag"] for t in body["tags"] if "faces" in t["sources"]}
    assert face_backed == {"people", "selfie"}
    clip_name = Path(body["model"]["name"].split("+")[0]).name
    assert body["models"] == [clip_name, "opencv-haar-frontalface", "yolov3-tiny"]
    default_k = client.post("/api/v1/image/tags", json={"image_url": f"{server.base_url}/ok.png"})
    assert len([t for t in default_k.json()["tags"] if "clip" in t["sources"]]) == 2


REFUSED = "image_url_refused"
BAD_INPUTS = [
    ("loopback-not-allowlisted", {"image_url": "http://127.0.0.2:{port}/ok.png"}, 422, REFUSED),
    ("metadata", {"image_url": "http://169.254.169.254/latest/meta-data/"}, 422, REFUSED),
    ("redirect-private", {"image_url": "{base}/redirect/private"}, 422, "image_url_refused"),
    ("redirect-metadata", {"image_url": "{base}/redirect/metadata"}, 422, "image_url_refused"),
    ("file-scheme", {"image_url": "file:///etc/passwd"}, 422, "image_url_refused"),
    ("fifty-mb", {"image_url": "{base}/big-streamed.png"}, 413, "image_too_large"),
    ("bomb-png", {"image_url": "{base}/huge.png"}, 413, "image_too_many_pixels"),
    ("truncated-jpeg", {"image_url": "{base}/truncated.jpg"}, 422, "image_invalid"),
    ("text-as-jpg", {"image_url": "{base}/text.jpg"}, 422, "image_invalid"),
    ("html", {"image_url": "{base}/page.html"}, 422, "image_unsupported_type"),
    ("no-answer", {"image_url": "http://127.0.0.1:{silent}/a.png"}, 422, "image_fetch_timeout"),
    ("bad-base64", {"image_base64": "***"}, 422, "image_invalid_base64"),
    ("both-fields", {"image_url": "{base}/ok.png", "image_base64": "AAAA"}, 422, "invalid_field"),
]


@pytest.mark.parametrize(
    "route", ["/api/v1/moderation/image", "/api/v1/image/tags", "/api/v1/image/objects"]
)
def test_every_bad_input_gets_its_4xx_and_the_service_keeps_serving(
    images_app: None, client: httpx.Client, server: ImageServer, silent: int, route: str
) -> None:
    for name, template, status, code in BAD_INPUTS:
        body = {
            k: v.format(base=server.base_url, port=server.port, silent=silent)
            for k, v in template.items()
        }
        response = client.post(route, json=body)
        assert response.status_code == status, (name, response.text)
        error = response.json()["error"]
        assert error["code"] == code, (name, error)
        assert error["message"] and error["field"], (name, error)
    good = client.post(route, json={"image_url": f"{server.base_url}/ok.png"})
    assert good.status_code == 200, good.text


def test_objects_in_real_photographs_and_the_tags_they_back(
    images_app: None, client: httpx.Client
) -> None:
    data = pytest.importorskip("skimage.data")
    astronaut = encode_png(data.astronaut())
    cat = encode_jpeg(data.chelsea())
    person = client.post(
        "/api/v1/image/objects", json={"image_base64": base64.b64encode(astronaut).decode()}
    )
    chelsea = client.post("/api/v1/image/objects", files={"file": ("cat.jpg", cat, "image/jpeg")})
    for response, label in ((person, "person"), (chelsea, "cat")):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["objects"][0]["label"] == label and body["objects"][0]["score"] >= 0.5
        assert body["model"]["name"] == "yolov3-tiny" and body["degraded"] is False
        x, y, w, h = body["objects"][0]["box"]
        assert (
            0 <= x
            and 0 <= y
            and x + w <= body["image"]["width"]
            and y + h <= body["image"]["height"]
        )
    tags = client.post(
        "/api/v1/image/tags", json={"image_base64": base64.b64encode(astronaut).decode()}
    )
    assert tags.status_code == 200, tags.text
    people = [t for t in tags.json()["tags"] if t["tag"] == "people"]
    assert people and "objects" in people[0]["sources"]


def test_oversized_image_body_is_413(images_app: None, client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/moderation/image",
        content=b'{"image_base64": "' + b"A" * 16_000_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_moderate_post_with_images(
    images_app: None, client: httpx.Client, server: ImageServer
) -> None:
    good = f"{server.base_url}/face.jpg"
    response = client.post(
        "/api/v1/moderation/moderate",
        json={"content": "Lovely evening with friends", "images": [good]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    (item,) = body["image_moderation"]
    assert item["index"] == 0 and item["status"] == "ok"
    order = {"approve": 0, "flag_for_review": 1, "reject": 2}
    worst = max(body["text_moderation"]["action"], item["result"]["action"], key=order.get)
    assert body["action"] == worst

    mixed = client.post(
        "/api/v1/moderation/moderate",
        json={
            "content": "Lovely evening with friends",
            "images": [good, "http://169.254.169.254/latest/meta-data/"],
        },
    ).json()
    assert [i["status"] for i in mixed["image_moderation"]] == ["ok", "error"]
    error = mixed["image_moderation"][1]["error"]
    assert error["code"] == "image_url_refused" and error["field"] == "images[1]"
    # An image nobody could check never lets the post through.
    assert mixed["action"] in {"flag_for_review", "reject"} and mixed["is_safe"] is False
    assert "image_unchecked" in mixed["flagged_categories"]

    too_many = client.post(
        "/api/v1/moderation/moderate", json={"content": "hi", "images": [good] * 4}
    )
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "images"


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
    images_app: None, hostile: HostileServer, client: httpx.Client
) -> None:
    route = "/api/v1/moderation/image"
    good = client.post(route, json={"image_url": f"{hostile.base_url}/identity.png"})
    assert good.status_code == 200, good.text  # warm: fetcher, decoder, NSFW node
    before = _ingress_resident_bytes()
    for _ in range(5):
        bomb = client.post(route, json={"image_url": f"{hostile.base_url}/bomb.png"})
        assert bomb.status_code == 422, bomb.text
        assert bomb.json()["error"]["field"] == "image_url"
        assert bomb.json()["error"]["code"] == "image_compressed"
    growth = _ingress_resident_bytes() - before
    assert growth < RSS_GROWTH_LIMIT_BYTES, f"the ingress grew by {growth} bytes"
    assert hostile.accept_encodings[-1] == "identity"

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

    again = client.post(route, json={"image_url": f"{hostile.base_url}/identity.png"})
    assert again.status_code == 200, again.text
