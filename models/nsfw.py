"""NSFW detection with the detector that ships inside the ``nudenet`` package.

The package's ``320n.onnx`` (a YOLOv8n detector, 18 body-part labels, 320x320 input with a
dynamic batch axis) is run here directly with onnxruntime, so one batch of images is one
``session.run`` call; nudenet's own ``NudeDetector`` only reads files or single arrays.
Label names are read from the ONNX file's metadata, not from a list in this code.

Detections are mapped to three probabilities that sum to 1:

* ``unsafe`` = the highest score among detections whose label is in ``unsafe_labels``;
* ``questionable`` = (1 - unsafe) x the highest score among ``questionable_labels``;
* ``safe`` = the rest.

Detector scores are confidences, not calibrated probabilities: the thresholds that turn them
into actions (``image_policy`` in the ingress config) are where an operator tunes the trade-off.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from models.answers import ModelInfo
from models.device import onnx_providers, onnx_session_device
from models.images import RGBImage

# Exposed sexual body parts: what a social network rejects outright by default.
DEFAULT_UNSAFE_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)
# Covered but sexualised parts (lingerie, swimwear close-ups): a human should look.
# Faces, feet, armpits, bellies and male chests are ordinary beach and sports photos.
DEFAULT_QUESTIONABLE_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
    "ANUS_COVERED",
)
# nudenet's own cut-offs: candidates below 0.2 are noise; NMS at IoU 0.45.
DEFAULT_MIN_SCORE = 0.2
NMS_IOU = 0.45
INPUT_SIZE_PX = 320
# Box coordinates and 4 + n_labels columns per candidate row (YOLOv8 output layout).
_BOX_COLUMNS = 4


def shipped_model_path() -> Path:
    """Path of the ONNX file inside the installed nudenet package (nothing is downloaded)."""
    import nudenet

    return Path(nudenet.__file__).parent / "320n.onnx"


@dataclass(frozen=True)
class Detection:
    """One detected body part: label, confidence and box ``[x, y, width, height]`` in pixels."""

    label: str
    score: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class NsfwResult:
    """One image's ``safe`` / ``questionable`` / ``unsafe`` probabilities (summing to 1) and
    the detections they were read from, highest score first."""

    safe: float
    questionable: float
    unsafe: float
    detections: tuple[Detection, ...]

    def probabilities(self) -> dict[str, float]:
        """``{"safe", "questionable", "unsafe"}``."""
        return {"safe": self.safe, "questionable": self.questionable, "unsafe": self.unsafe}


def nsfw_probabilities(
    detections: Iterable[Detection],
    unsafe_labels: Iterable[str] = DEFAULT_UNSAFE_LABELS,
    questionable_labels: Iterable[str] = DEFAULT_QUESTIONABLE_LABELS,
) -> dict[str, float]:
    """``{"safe", "questionable", "unsafe"}`` probabilities (summing to 1) from detections.

    A label in neither group (faces, feet, ...) does not move the probabilities.
    """
    unsafe_set, questionable_set = set(unsafe_labels), set(questionable_labels)
    unsafe = questionable_raw = 0.0
    for detection in detections:
        if detection.label in unsafe_set:
            unsafe = max(unsafe, detection.score)
        elif detection.label in questionable_set:
            questionable_raw = max(questionable_raw, detection.score)
    questionable = (1.0 - unsafe) * questionable_raw
    return {"safe": 1.0 - unsafe - questionable, "questionable": questionable, "unsafe": unsafe}


class NudeNetDetector:
    """Batched NSFW detector over RGB arrays; see the module docstring for the mapping."""

    def __init__(
        self,
        session: Any,
        labels: Sequence[str],
        version: str,
        min_score: float = DEFAULT_MIN_SCORE,
        unsafe_labels: Sequence[str] = DEFAULT_UNSAFE_LABELS,
        questionable_labels: Sequence[str] = DEFAULT_QUESTIONABLE_LABELS,
    ) -> None:
        """Wrap an onnxruntime session; use `load` instead of calling this."""
        unknown = sorted((set(unsafe_labels) | set(questionable_labels)) - set(labels))
        if unknown:
            raise ValueError(
                f"label groups name {unknown}, which the detector does not have; "
                f"use labels from {list(labels)}"
            )
        self._session = session
        self._input_name: str = session.get_inputs()[0].name
        self.labels = tuple(labels)
        self.min_score = min_score
        self.unsafe_labels = tuple(unsafe_labels)
        self.questionable_labels = tuple(questionable_labels)
        # The device the session got: onnxruntime falls back to the CPU on its own when its
        # CUDA provider finds no GPU.
        device = onnx_session_device(session) if hasattr(session, "get_providers") else "cpu"
        self.info = ModelInfo(
            name="nudenet-320n", version=version, device=device, labels=self.labels
        )

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        min_score: float = DEFAULT_MIN_SCORE,
        unsafe_labels: Sequence[str] = DEFAULT_UNSAFE_LABELS,
        questionable_labels: Sequence[str] = DEFAULT_QUESTIONABLE_LABELS,
        num_threads: int = 0,
        device: str = "auto",
    ) -> NudeNetDetector:
        """Load the ONNX detector (default: the file shipped in nudenet; ~0.1 s).

        Args:
            path: Another ONNX file of the same layout; default the shipped ``320n.onnx``.
            min_score: Detections below this confidence are dropped.
            unsafe_labels: Labels whose score is the ``unsafe`` probability.
            questionable_labels: Labels whose score feeds ``questionable``.
            num_threads: onnxruntime intra-op threads; 0 = onnxruntime's default (all cores).
            device: ``"auto"`` (CUDA when onnxruntime has it, else CPU), ``"cpu"``,
                ``"cuda"`` or ``"cuda:N"`` (see `models.device.onnx_providers`).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: A label group names a label the model does not have.
        """
        import onnxruntime

        model_path = Path(path) if path else shipped_model_path()
        if not model_path.is_file():
            raise FileNotFoundError(
                f"NSFW model {str(model_path)!r} does not exist; leave nsfw_model.path unset "
                "to use the detector shipped in the nudenet package"
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        session = onnxruntime.InferenceSession(
            str(model_path), sess_options=options, providers=onnx_providers(device)
        )
        names = session.get_modelmeta().custom_metadata_map.get("names")
        if not names:
            raise ValueError(
                f"{str(model_path)!r} has no 'names' metadata; expected an Ultralytics "
                "YOLOv8 ONNX export such as nudenet's 320n.onnx"
            )
        id2label: dict[int, str] = ast.literal_eval(names)
        labels = [id2label[i] for i in sorted(id2label)]
        version = metadata.version("nudenet") if path is None else model_path.name
        return cls(session, labels, version, min_score, unsafe_labels, questionable_labels)

    # ---- preprocess / forward / postprocess ------------------------------------------------
    @staticmethod
    def preprocess(image: RGBImage) -> tuple[NDArray[np.float32], float]:
        """Pad to a square (bottom/right), resize to 320 px, scale to [0, 1], CHW.

        Returns the input tensor and the factor from model pixels back to image pixels.
        """
        height, width = image.shape[:2]
        side = max(height, width)
        padded = cv2.copyMakeBorder(
            image, 0, side - height, 0, side - width, cv2.BORDER_CONSTANT, value=(0, 0, 0)
        )
        resized = cv2.resize(padded, (INPUT_SIZE_PX, INPUT_SIZE_PX), interpolation=cv2.INTER_LINEAR)
        tensor = np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32) / 255.0
        return tensor, side / INPUT_SIZE_PX

    def forward(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """One onnxruntime call over an (N, 3, 320, 320) batch; (N, 4 + labels, candidates)."""
        outputs = self._session.run(None, {self._input_name: batch})
        return np.asarray(outputs[0], dtype=np.float32)

    def postprocess(
        self, output: NDArray[np.float32], factor: float, width: int, height: int
    ) -> list[Detection]:
        """Candidates of one image → detections above ``min_score`` after NMS, in image pixels."""
        rows = output.T  # (candidates, 4 + labels)
        class_scores = rows[:, _BOX_COLUMNS:]
        best = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(rows)), best]
        keep = scores >= self.min_score
        if not keep.any():
            return []
        centre_x, centre_y, box_w, box_h = (rows[keep, i] * factor for i in range(_BOX_COLUMNS))
        left = np.clip(centre_x - box_w / 2, 0, width)
        top = np.clip(centre_y - box_h / 2, 0, height)
        box_w = np.minimum(box_w, width - left)
        box_h = np.minimum(box_h, height - top)
        boxes = np.stack([left, top, box_w, box_h], axis=1)
        kept_scores, kept_labels = scores[keep], best[keep]
        indices = cv2.dnn.NMSBoxes(boxes.tolist(), kept_scores.tolist(), self.min_score, NMS_IOU)
        detections = [
            Detection(
                label=self.labels[int(kept_labels[i])],
                score=float(kept_scores[i]),
                box=(
                    int(boxes[i, 0]),
                    int(boxes[i, 1]),
                    int(boxes[i, 2]),
                    int(boxes[i, 3]),
                ),
            )
            for i in np.asarray(indices, dtype=np.int64).reshape(-1)
        ]
        return sorted(detections, key=lambda d: -d.score)

    def predict_batch(self, images: list[RGBImage]) -> list[NsfwResult]:
        """One result per image: probabilities and detections (label, score, box), in order."""
        if not images:
            return []
        prepared = [self.preprocess(image) for image in images]
        batch = np.stack([tensor for tensor, _ in prepared])
        outputs = self.forward(batch)
        results: list[NsfwResult] = []
        for image, (_, factor), output in zip(images, prepared, outputs, strict=True):
            height, width = image.shape[:2]
            detections = self.postprocess(output, factor, width, height)
            probabilities = nsfw_probabilities(
                detections, self.unsafe_labels, self.questionable_labels
            )
            results.append(NsfwResult(**probabilities, detections=tuple(detections)))
        return results
