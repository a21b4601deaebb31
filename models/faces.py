"""Face counting with OpenCV's Haar cascade (the XML ships in opencv-python-headless < 5).

A classic Viola-Jones detector: no scores, only boxes, and frontal faces only. It is cheap
(see docs/benchmarks.md) and good enough to tell "nobody", "one person" and "a group" apart,
which is what the tags built on it need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.answers import ModelInfo
from models.images import RGBImage

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Haar work grows with the pixel count; faces worth counting stay detectable at 640 px.
DEFAULT_MAX_SIDE_PX = 640
# OpenCV's documented defaults for this cascade; minNeighbors 5 keeps false positives rare.
DEFAULT_SCALE_FACTOR = 1.1
DEFAULT_MIN_NEIGHBORS = 5
# Faces smaller than this share of the shorter image side are noise for tagging purposes.
DEFAULT_MIN_FACE_FRACTION = 0.04


FaceBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class Faces:
    """The frontal faces found in one image: how many, and their boxes ``(x, y, w, h)``."""

    count: int
    boxes: tuple[FaceBox, ...]


class HaarFaceDetector:
    """Counts frontal faces; ``predict_batch`` returns one `Faces` per image."""

    def __init__(
        self,
        classifier: Any,
        max_side_px: int = DEFAULT_MAX_SIDE_PX,
        scale_factor: float = DEFAULT_SCALE_FACTOR,
        min_neighbors: int = DEFAULT_MIN_NEIGHBORS,
        min_face_fraction: float = DEFAULT_MIN_FACE_FRACTION,
    ) -> None:
        """Wrap a loaded ``cv2.CascadeClassifier``; use `load` instead of calling this."""
        self._classifier = classifier
        self.max_side_px = max_side_px
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face_fraction = min_face_fraction
        self.info = ModelInfo(
            name="opencv-haar-frontalface", version=cv2.__version__, device="cpu", labels=("face",)
        )

    @classmethod
    def load(cls, path: str | Path | None = None, **options: Any) -> HaarFaceDetector:
        """Load the cascade (default: the frontal-face XML shipped with OpenCV).

        Raises:
            FileNotFoundError: The XML is missing (opencv-python-headless 5.x ships none;
                install ``opencv-python-headless<5``) or cannot be parsed.
        """
        shipped = Path(cv2.data.haarcascades) / CASCADE_FILE  # type: ignore[attr-defined]
        cascade = Path(path) if path else shipped
        classifier = cv2.CascadeClassifier(str(cascade)) if cascade.is_file() else None
        if classifier is None or classifier.empty():
            raise FileNotFoundError(
                f"Haar cascade {str(cascade)!r} is missing or unreadable; install "
                "opencv-python-headless<5 (5.x ships no Haar files) or set its path"
            )
        return cls(classifier, **options)

    def detect(self, image: RGBImage) -> list[FaceBox]:
        """Face boxes ``(x, y, width, height)`` in the image's own pixels, largest first."""
        height, width = image.shape[:2]
        factor = min(1.0, self.max_side_px / max(height, width))
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if factor < 1.0:
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        # Equalising makes the cascade far less sensitive to exposure (its features are
        # differences of mean brightness between rectangles).
        gray = cv2.equalizeHist(gray)
        min_side = max(20, round(min(gray.shape[:2]) * self.min_face_fraction))
        found = self._classifier.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
        )
        boxes = [
            (round(x / factor), round(y / factor), round(w / factor), round(h / factor))
            for x, y, w, h in np.asarray(found, dtype=np.int64).reshape(-1, 4)
        ]
        return sorted(boxes, key=lambda b: -(b[2] * b[3]))

    def predict_batch(self, images: list[RGBImage]) -> list[Faces]:
        """One `Faces` per image, in input order.

        Haar cascades have no batched kernel: images run one after another.
        """
        results: list[Faces] = []
        for image in images:
            boxes = self.detect(image)
            results.append(Faces(count=len(boxes), boxes=tuple(boxes)))
        return results
