"""Image models on images the tests draw or generate: decoding guards, NSFW, faces, tags."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.exceptions import ImageInputError
from models.faces import Faces, HaarFaceDetector
from models.images import decode_image, encode_jpeg, encode_png
from models.nsfw import (
    DEFAULT_QUESTIONABLE_LABELS,
    DEFAULT_UNSAFE_LABELS,
    Detection,
    NudeNetDetector,
    nsfw_probabilities,
)
from models.tag_types import DEFAULT_TAGS, ImageTag
from models.tagger import (
    ClipZeroShot,
    ImageTagModel,
    ImageTagRequest,
    face_tags,
    merge_tags,
)
from tests.fixtures.images import faces_image, huge_png, noise_image


@pytest.fixture(scope="module")
def nsfw() -> NudeNetDetector:
    return NudeNetDetector.load(num_threads=1)


@pytest.fixture(scope="module")
def faces() -> HaarFaceDetector:
    return HaarFaceDetector.load()


# ---- decoding -------------------------------------------------------------------------------
def test_decode_shrinks_large_images_and_reports_the_original_size() -> None:
    pixels = np.zeros((600, 2000, 3), dtype=np.uint8)
    decoded = decode_image(encode_png(pixels), max_side_px=500)
    assert decoded.pixels.shape == (150, 500, 3) and decoded.pixels.dtype == np.uint8
    assert (decoded.original_width, decoded.original_height) == (2000, 600)
    assert decoded.scale == pytest.approx(4.0)


def test_decode_converts_grey_and_alpha_images_to_rgb() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (10, 8), (255, 0, 0, 128)).save(buffer, format="PNG")
    assert decode_image(buffer.getvalue()).pixels.shape == (8, 10, 3)
    buffer = io.BytesIO()
    Image.new("L", (10, 8), 7).save(buffer, format="GIF")
    assert decode_image(buffer.getvalue()).pixels.shape == (8, 10, 3)


def test_pixel_cap_is_checked_from_the_header_before_decoding() -> None:
    # 8000 x 8000 is under Pillow's own bomb limit, over ours: our message names the size.
    with pytest.raises(ImageInputError) as ours:
        decode_image(huge_png(8000, 8000), "images[1]", max_pixels=40_000_000)
    assert ours.value.code == "image_too_many_pixels" and ours.value.status == 413
    assert "8000x8000" in ours.value.message and ours.value.field == "images[1]"
    with pytest.raises(ImageInputError) as pillow:
        decode_image(huge_png())  # 20000 x 20000: also refused, without allocating 400 Mpx
    assert pillow.value.code == "image_too_many_pixels"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "image_empty"),
        (b"hello, this is plain text named photo.jpg", "image_invalid"),
        (encode_jpeg(noise_image(0))[:3000], "image_invalid"),
        (encode_png(noise_image(1))[:500], "image_invalid"),
    ],
    ids=["empty", "text", "truncated-jpeg", "truncated-png"],
)
def test_bad_bytes_raise_a_named_422(data: bytes, code: str) -> None:
    with pytest.raises(ImageInputError) as caught:
        decode_image(data, "image_base64")
    assert caught.value.code == code and caught.value.status == 422
    assert caught.value.field == "image_base64"


# ---- NSFW ---------------------------------------------------------------------------------
def test_nsfw_labels_come_from_the_shipped_onnx_metadata(nsfw: NudeNetDetector) -> None:
    assert len(nsfw.labels) == 18 and "FACE_FEMALE" in nsfw.labels
    assert set(DEFAULT_UNSAFE_LABELS) | set(DEFAULT_QUESTIONABLE_LABELS) <= set(nsfw.labels)
    assert nsfw.info.name == "nudenet-320n" and nsfw.info.device == "cpu"


def test_nsfw_runs_on_generated_images_batch_equals_single(nsfw: NudeNetDetector) -> None:
    images = [noise_image(3), faces_image(1), noise_image(4, 500, 200), faces_image(3)]
    batch = nsfw.predict_batch(images)
    assert len(batch) == len(images)
    for image, result in zip(images, batch, strict=True):
        probabilities = [result.safe, result.questionable, result.unsafe]
        assert all(0.0 <= p <= 1.0 for p in probabilities)
        assert sum(probabilities) == pytest.approx(1.0)
        height, width = image.shape[:2]
        for detection in result.detections:
            # No assertion that drawn shapes have no detections: the detector flags some.
            assert detection.label in nsfw.labels and detection.score >= nsfw.min_score
            x, y, w, h = detection.box
            assert 0 <= x <= width and 0 <= y <= height and x + w <= width + 1
            assert y + h <= height + 1
        single = nsfw.predict_batch([image])[0]
        assert single.unsafe == pytest.approx(result.unsafe, abs=1e-4)
        assert [d.label for d in single.detections] == [d.label for d in result.detections]
    assert nsfw.predict_batch([]) == []


def test_detections_map_to_probabilities_by_label_group() -> None:
    def det(label: str, score: float) -> Detection:
        return Detection(label, score, (0, 0, 1, 1))

    assert nsfw_probabilities([]) == {"safe": 1.0, "questionable": 0.0, "unsafe": 0.0}
    # Faces and feet do not move the needle.
    neutral = nsfw_probabilities([det("FACE_FEMALE", 0.99), det("FEET_EXPOSED", 0.9)])
    assert neutral["safe"] == 1.0
    unsafe = nsfw_probabilities([det("FEMALE_BREAST_EXPOSED", 0.8), det("ANUS_EXPOSED", 0.3)])
    assert unsafe == pytest.approx({"safe": 0.2, "questionable": 0.0, "unsafe": 0.8})
    mixed = nsfw_probabilities([det("BUTTOCKS_EXPOSED", 0.5), det("BUTTOCKS_COVERED", 0.6)])
    assert mixed == pytest.approx({"safe": 0.2, "questionable": 0.3, "unsafe": 0.5})
    # Groups are configuration: moving a label changes the mapping.
    custom = nsfw_probabilities([det("BELLY_EXPOSED", 0.7)], unsafe_labels=["BELLY_EXPOSED"])
    assert custom["unsafe"] == pytest.approx(0.7)


def test_postprocess_keeps_scores_above_min_and_scales_boxes(nsfw: NudeNetDetector) -> None:
    labels = len(nsfw.labels)
    output = np.zeros((4 + labels, 3), dtype=np.float32)
    # Candidate 0: a BUTTOCKS_EXPOSED box centred at (160, 160) in model pixels, 0.9.
    output[:4, 0] = [160, 160, 100, 50]
    output[4 + nsfw.labels.index("BUTTOCKS_EXPOSED"), 0] = 0.9
    # Candidate 1: below min_score, dropped. Candidate 2: overlaps 0 with lower score (NMS).
    output[:4, 1] = [50, 50, 10, 10]
    output[4 + nsfw.labels.index("FACE_MALE"), 1] = 0.1
    output[:4, 2] = [161, 160, 100, 50]
    output[4 + nsfw.labels.index("BUTTOCKS_EXPOSED"), 2] = 0.5
    detections = nsfw.postprocess(output, factor=2.0, width=640, height=640)
    assert [(d.label, round(d.score, 2)) for d in detections] == [("BUTTOCKS_EXPOSED", 0.9)]
    assert detections[0].box == (220, 270, 200, 100)


def test_unknown_label_in_a_group_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="NOT_A_LABEL"):
        NudeNetDetector.load(unsafe_labels=["NOT_A_LABEL"])


# ---- faces ----------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 3])
def test_haar_counts_drawn_faces(faces: HaarFaceDetector, count: int) -> None:
    result = faces.predict_batch([faces_image(count)])[0]
    assert result.count == count
    assert len(result.boxes) == count and all(len(box) == 4 for box in result.boxes)


def test_haar_finds_no_face_in_noise_and_boxes_scale_back(faces: HaarFaceDetector) -> None:
    assert faces.predict_batch([noise_image(5)]) == [Faces(count=0, boxes=())]
    # A big picture is searched at 640 px; boxes come back in its own pixels.
    small = faces_image(1)
    big = np.kron(small, np.ones((4, 4, 1), dtype=np.uint8))
    small_box = faces.detect(small)[0]
    big_box = faces.detect(big)[0]
    assert big_box[2] == pytest.approx(4 * small_box[2], rel=0.2)


# ---- tags ---------------------------------------------------------------------------------
def test_face_tags_follow_face_counts() -> None:
    one_big = Faces(count=1, boxes=((0, 0, 100, 100),))
    one_small = Faces(count=1, boxes=((0, 0, 10, 10),))
    three = Faces(count=3, boxes=((0, 0, 10, 10),) * 3)
    assert face_tags(one_big, 200, 200, DEFAULT_TAGS) == ["people", "selfie"]
    assert face_tags(one_small, 200, 200, DEFAULT_TAGS) == ["people"]
    assert face_tags(three, 200, 200, DEFAULT_TAGS) == ["people", "group photo"]
    assert face_tags(Faces(count=0, boxes=()), 200, 200, DEFAULT_TAGS) == []
    # Only candidate tags are ever emitted.
    assert face_tags(three, 200, 200, ["food"]) == []


def test_fallback_tagger_emits_only_detector_backed_tags() -> None:
    tagger = ImageTagModel.load(None)
    assert tagger.clip is None and tagger.models == ["opencv-haar-frontalface"]
    assert set(tagger.info.labels) == {"people", "selfie", "group photo"}
    noise, group = tagger.predict_batch([noise_image(6), faces_image(3)])
    assert noise.tags == () and noise.faces.count == 0
    assert [t.tag for t in group.tags] == ["people", "group photo"]
    assert all(t.score is None and t.sources == ("faces",) for t in group.tags)


def test_merge_marks_tags_backed_by_both_models() -> None:
    scores = {"people": 0.1, "food": 0.6, "beach": 0.3}
    merged = merge_tags(scores, ["people", "selfie"], top_k=2)
    assert merged == [
        ImageTag("food", 0.6, ("clip",)),
        ImageTag("beach", 0.3, ("clip",)),
        ImageTag("people", 0.1, ("faces",)),
        ImageTag("selfie", None, ("faces",)),
    ]
    both = merge_tags(scores, ["people"], top_k=3)
    assert both[-1] == ImageTag("people", 0.1, ("clip", "faces"))


def test_clip_zero_shot_top_k_label_order_and_batching(tiny_clip_checkpoint: Path) -> None:
    tags = ["food", "beach", "sunset", "music", "people"]
    clip = ClipZeroShot.load(tiny_clip_checkpoint, tags, device="cpu")
    assert clip.tags == tuple(tags) and clip.text_embeddings.shape == (5, 16)
    assert clip.info.version and clip.info.labels == tuple(tags)
    images = [noise_image(7), faces_image(1), noise_image(8, 64, 300)]
    batch = clip.predict_batch(images)
    for image, scores in zip(images, batch, strict=True):
        assert list(scores) == tags  # label order is the configured order
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
        single = clip.predict_batch([image])[0]
        assert single == pytest.approx(scores, abs=1e-5)
    tagger = ImageTagModel(HaarFaceDetector.load(), clip, top_k=2)
    result = tagger.predict_batch(images, top_k=[2, 2, 4])
    clip_only = [[t for t in r.tags if "clip" in t.sources] for r in result]
    assert [len(tags_) for tags_ in clip_only] == [2, 2, 4]
    for scores, chosen in zip(batch, clip_only, strict=True):
        expected = sorted(scores, key=lambda tag: -scores[tag])[: len(chosen)]
        assert [t.tag for t in chosen] == expected
    # The face in image 1 backs "people" whatever CLIP thinks of it.
    assert "faces" in next(t for t in result[1].tags if t.tag == "people").sources
    # Typed requests (what the node batches) answer the same, each with its own top_k.
    requests = [ImageTagRequest(image, k) for image, k in zip(images, [2, 2, 4], strict=True)]
    assert tagger.predict_requests(requests) == result


def test_clip_text_embeddings_are_computed_once_at_load(tiny_clip_checkpoint: Path) -> None:
    clip = ClipZeroShot.load(tiny_clip_checkpoint, ["food", "art"], device="cpu")
    calls = 0
    original = clip.model.get_text_features

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    clip.model.get_text_features = counting
    clip.predict_batch([noise_image(9)] * 3)
    assert calls == 0


def test_clip_checkpoint_errors_name_the_fix(tmp_path: Path, tiny_clip_checkpoint: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ClipZeroShot.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="placeholder"):
        ClipZeroShot.load(tiny_clip_checkpoint, prompt_template="a photo")
    with pytest.raises(ValueError, match="repeat"):
        ClipZeroShot.load(tiny_clip_checkpoint, ["food", "food"])
    config = json.loads((tiny_clip_checkpoint / "config.json").read_text())
    assert config["architectures"] == ["CLIPModel"]
