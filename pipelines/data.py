"""Reading and checking labelled text files BEFORE any training starts.

Every check raises `DataValidationError` naming the file, the line (or row) and what is wrong.
Messages never quote the text of a row: the data sets contain slurs and personal posts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.heads import (
    DAVIDSON_NEITHER,
    MODERATION_HEAD_LABELS,
    SENTIMENT_HEAD_LABELS,
    davidson_targets,
    sentiment_class,
)

__all__ = [
    "DAVIDSON_COLUMNS",
    "DataValidationError",
    "LabelledTexts",
    "Split",
    "load_labelled",
    "read_davidson_csv",
    "read_vader_ground_truth",
    "stratified_split",
]

DAVIDSON_COLUMNS = ("count", "hate_speech", "offensive_language", "neither", "class", "tweet")
# Fewer rows than this cannot give every class a train, validation and test share.
MIN_ROWS = 20
# How many bad line numbers an error lists before "...".
_MAX_LISTED = 5


class DataValidationError(ValueError):
    """A labelled data file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with training targets and one hard class per row (for splits and metrics).

    Attributes:
        texts: The texts, in file order.
        targets: moderation ``(n, 2)`` float (hate_speech, offensive), sentiment ``(n,)`` int.
        classes: moderation: Davidson class 0 hate / 1 offensive / 2 neither; sentiment:
            index into SENTIMENT_HEAD_LABELS.
        labels: Output labels of the head trained on these targets.
    """

    texts: list[str]
    targets: np.ndarray
    classes: np.ndarray
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: np.ndarray) -> LabelledTexts:
        """Rows at `indices`, in that order."""
        return LabelledTexts(
            [self.texts[i] for i in indices],
            self.targets[indices],
            self.classes[indices],
            self.labels,
        )

    def fingerprint(self) -> str:
        """SHA-256 prefix over the texts: names an embedding cache entry, never the text."""
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(text.encode("utf-8"))
            digest.update(b"\0")
        return digest.hexdigest()[:24]


def _listed(rows: list[int]) -> str:
    shown = ", ".join(str(row) for row in rows[:_MAX_LISTED])
    return shown + (f" and {len(rows) - _MAX_LISTED} more" if len(rows) > _MAX_LISTED else "")


def _require_file(path: Path) -> None:
    if not path.exists():
        raise DataValidationError(
            f"data file {str(path)!r} does not exist; set data_paths to the labelled files "
            "(e.g. ../shared/data/toxicity/davidson_train.csv, see ../shared/data/README.md)"
        )
    if not path.is_file():
        raise DataValidationError(f"data path {str(path)!r} is not a file; point it at a file")
    if path.stat().st_size == 0:
        raise DataValidationError(f"data file {str(path)!r} is empty; it holds no labelled rows")


def read_davidson_csv(path: str | Path, soft_targets: bool = True) -> LabelledTexts:
    """Read a Davidson et al. CSV (columns `DAVIDSON_COLUMNS`; others are ignored).

    Raises:
        DataValidationError: Missing/empty file, not parseable as CSV, missing columns,
            classes outside 0..2, negative or missing vote counts, empty texts.
    """
    source = Path(path)
    _require_file(source)
    try:
        frame = pd.read_csv(source, encoding="utf-8", keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataValidationError(
            f"data file {str(source)!r} is not a readable UTF-8 CSV ({type(exc).__name__}: "
            f"{exc}); re-export it as comma-separated UTF-8 with a header row"
        ) from exc
    missing = [column for column in DAVIDSON_COLUMNS if column not in frame.columns]
    if missing:
        raise DataValidationError(
            f"data file {str(source)!r} lacks column(s) {missing}; found "
            f"{list(frame.columns)[:12]}; a moderation file needs {list(DAVIDSON_COLUMNS)}"
        )
    # Line numbers as a text editor shows them: header is line 1.
    line_of = np.arange(len(frame)) + 2
    numbers: dict[str, np.ndarray] = {}
    for column in ("count", "hate_speech", "offensive_language", "neither", "class"):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
        if bad.any():
            raise DataValidationError(
                f"data file {str(source)!r}: column {column!r} must hold whole numbers >= 0; "
                f"bad value on line(s) {_listed(line_of[bad].tolist())}"
            )
        numbers[column] = values
    classes = numbers["class"].astype(np.int64)
    bad_class = (classes < 0) | (classes > DAVIDSON_NEITHER)
    if bad_class.any():
        raise DataValidationError(
            f"data file {str(source)!r}: column 'class' must be 0 (hate speech), 1 (offensive) "
            f"or 2 (neither); other values on line(s) {_listed(line_of[bad_class].tolist())}"
        )
    texts = frame["tweet"].astype(str).tolist()
    empty = [int(line_of[i]) for i, text in enumerate(texts) if not text.strip()]
    if empty:
        raise DataValidationError(
            f"data file {str(source)!r}: empty 'tweet' on line(s) {_listed(empty)}; drop those rows"
        )
    if len(texts) < MIN_ROWS:
        raise DataValidationError(
            f"data file {str(source)!r} has {len(texts)} rows; at least {MIN_ROWS} are needed "
            "for train, validation and test splits"
        )
    if soft_targets:
        targets = davidson_targets(
            classes, numbers["hate_speech"], numbers["offensive_language"], numbers["count"]
        )
    else:
        targets = davidson_targets(classes)
    return LabelledTexts(texts, targets, classes, MODERATION_HEAD_LABELS)


def read_vader_ground_truth(path: str | Path) -> LabelledTexts:
    """Read a VADER ground-truth file: ``id<TAB>mean rating<TAB>text`` per line, CRLF or LF.

    Raises:
        DataValidationError: Missing/empty file, not UTF-8, a line without three
            tab-separated fields, a rating that is not a number in -4..4, an empty text.
    """
    source = Path(path)
    _require_file(source)
    try:
        content = source.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataValidationError(
            f"data file {str(source)!r} is not UTF-8 (byte {exc.start}); re-encode it as UTF-8"
        ) from exc
    texts: list[str] = []
    ratings: list[float] = []
    bad_fields: list[int] = []
    bad_ratings: list[int] = []
    for line_number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3 or not fields[2].strip():
            bad_fields.append(line_number)
            continue
        try:
            rating = float(fields[1])
        except ValueError:
            bad_ratings.append(line_number)
            continue
        if not -4.0 <= rating <= 4.0:
            bad_ratings.append(line_number)
            continue
        texts.append(fields[2].strip())
        ratings.append(rating)
    if bad_fields:
        raise DataValidationError(
            f"data file {str(source)!r}: line(s) {_listed(bad_fields)} do not have three "
            "tab-separated fields (id, mean rating, non-empty text); is it a VADER "
            "*_GroundTruth.txt file?"
        )
    if bad_ratings:
        raise DataValidationError(
            f"data file {str(source)!r}: line(s) {_listed(bad_ratings)} have a rating that "
            "is not a number in -4..4 (second field)"
        )
    if len(texts) < MIN_ROWS:
        raise DataValidationError(
            f"data file {str(source)!r} has {len(texts)} rows; at least {MIN_ROWS} are needed "
            "for train, validation and test splits"
        )
    classes = sentiment_class(np.asarray(ratings, dtype=np.float32))
    return LabelledTexts(texts, classes, classes, SENTIMENT_HEAD_LABELS)


def load_labelled(
    task: str,
    paths: list[str],
    soft_targets: bool = True,
    max_rows: int | None = None,
    seed: int = 0,
) -> LabelledTexts:
    """Read and check every file of a job, concatenate, and sample `max_rows` (seeded)."""
    parts = [
        read_davidson_csv(path, soft_targets)
        if task == "moderation"
        else read_vader_ground_truth(path)
        for path in paths
    ]
    data = LabelledTexts(
        [text for part in parts for text in part.texts],
        np.concatenate([part.targets for part in parts]),
        np.concatenate([part.classes for part in parts]),
        parts[0].labels,
    )
    if max_rows is not None and max_rows < len(data):
        rng = np.random.default_rng(seed)
        data = data.subset(np.sort(rng.choice(len(data), size=max_rows, replace=False)))
    if len(np.unique(data.classes)) < 2:
        raise DataValidationError(
            f"data {paths} hold only class {int(data.classes[0])}; a classifier needs "
            "examples of at least two classes"
        )
    return data


@dataclass(frozen=True)
class Split:
    """Row indices of the train, validation and held-out test parts."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def stratified_split(
    classes: np.ndarray, validation_fraction: float, test_fraction: float, seed: int
) -> Split:
    """A seeded split that keeps each class's share in every part.

    Each class with at least 3 rows puts at least one row in validation and test, so a rare
    class (hate speech is ~6% of Davidson) is still measured on small samples.
    """
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    validation: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for value in np.unique(classes):
        members = rng.permutation(np.flatnonzero(classes == value))
        count = len(members)
        n_test = max(1, round(count * test_fraction)) if count >= 3 else 0
        n_val = max(1, round(count * validation_fraction)) if count >= 3 else 0
        test.append(members[:n_test])
        validation.append(members[n_test : n_test + n_val])
        train.append(members[n_test + n_val :])
    return Split(
        np.sort(np.concatenate(train)),
        np.sort(np.concatenate(validation)),
        np.sort(np.concatenate(test)),
    )
