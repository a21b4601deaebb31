"""The heads that ship inside the package: where they are, and their checksums checked at load.

A shipped head is a `models.heads` checkpoint committed under ``models/shipped/<task>-head/``
with a ``MODEL_CARD.md`` (data, licence, split, metrics, thresholds, how to retrain) and a
``MANIFEST``: one ``<sha256>  <file name>`` line per file, the format ``sha256sum`` writes, so

    cd models/shipped/moderation-head && sha256sum -c MANIFEST

checks a copy by hand. `load_shipped_head` verifies every listed file before torch reads a
byte of the weights; a missing, changed or unlisted-but-needed file raises
`ShippedArtifactError` naming the file and the checksum it should have. Nothing is
downloaded: the bytes are part of the installed package (``pyproject.toml`` package data).

Writing the files (after ``pipelines.text_heads`` trained a head) is `write_manifest`;
``python -m pipelines.ship_heads`` does the copy, the manifest and the card's figures.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from models.heads import (
    HEAD_CONFIG_FILENAME,
    HEAD_VERSION_FILENAME,
    HEAD_WEIGHTS_FILENAME,
    HeadClassifier,
    HeadModerator,
    HeadSentiment,
)
from models.text_vectors import TextEncoder

__all__ = [
    "MANIFEST_FILENAME",
    "MODEL_CARD_FILENAME",
    "SHIPPED_DIR",
    "SHIPPED_HEADS",
    "ShippedArtifactError",
    "file_sha256",
    "load_shipped_head",
    "read_manifest",
    "shipped_head_dir",
    "verify_manifest",
    "write_manifest",
]

ShippedTask = Literal["moderation", "sentiment"]

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
# Task -> the committed head checkpoint of that task.
SHIPPED_HEADS: dict[str, Path] = {
    "moderation": SHIPPED_DIR / "moderation-head",
    "sentiment": SHIPPED_DIR / "sentiment-head",
}
MANIFEST_FILENAME = "MANIFEST"
MODEL_CARD_FILENAME = "MODEL_CARD.md"
# The files `models.heads.load_head` reads: a manifest must list every one of them.
_LOADED_FILES = (HEAD_CONFIG_FILENAME, HEAD_WEIGHTS_FILENAME)
_HASH_CHUNK_BYTES = 1 << 20
_SHA256_HEX_CHARS = 64
_VERSION_HEX_CHARS = 12

_HEAD_CLASSES: dict[str, type[HeadClassifier[Any]]] = {
    "moderation": HeadModerator,
    "sentiment": HeadSentiment,
}


class ShippedArtifactError(ValueError):
    """A shipped artifact is missing a file, or a file's bytes are not the ones recorded.

    Attributes:
        path: The file that failed (or the MANIFEST itself).
        expected_sha256: The checksum the MANIFEST records for it ("" when it records none).
    """

    def __init__(self, path: Path, expected_sha256: str, problem: str) -> None:
        expected = f"expected sha256 {expected_sha256}" if expected_sha256 else "no checksum"
        super().__init__(
            f"shipped artifact file {str(path)!r} refused: {problem} ({expected}, from "
            f"{MANIFEST_FILENAME}); reinstall the package or restore the file "
            "(git checkout models/shipped)"
        )
        self.path = path
        self.expected_sha256 = expected_sha256


def shipped_head_dir(task: str) -> Path:
    """The committed head directory of `task`.

    Raises:
        ValueError: No head ships for `task`.
    """
    directory = SHIPPED_HEADS.get(task)
    if directory is None:
        raise ValueError(f"no shipped head for task {task!r}; shipped: {', '.join(SHIPPED_HEADS)}")
    return directory


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: str | os.PathLike[str]) -> Path:
    """Write ``MANIFEST`` listing the SHA-256 of every other file in `directory` (sorted)."""
    target = Path(directory)
    names = sorted(
        path.name for path in target.iterdir() if path.is_file() and path.name != MANIFEST_FILENAME
    )
    lines = [f"{file_sha256(target / name)}  {name}\n" for name in names]
    manifest = target / MANIFEST_FILENAME
    manifest.write_text("".join(lines), encoding="utf-8")
    return manifest


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, str]:
    """File name -> expected hex SHA-256, from `directory`'s MANIFEST.

    Raises:
        ShippedArtifactError: The MANIFEST is missing or a line is not ``<sha256>  <name>``.
    """
    manifest = Path(directory) / MANIFEST_FILENAME
    if not manifest.is_file():
        raise ShippedArtifactError(manifest, "", "the MANIFEST is missing")
    expected: dict[str, str] = {}
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != _SHA256_HEX_CHARS or not name or "/" in name or name.startswith("."):
            raise ShippedArtifactError(
                manifest, "", f"line {number} is not '<sha256>  <file name>'"
            )
        expected[name] = digest.lower()
    return expected


def verify_manifest(
    directory: str | os.PathLike[str], required: Sequence[str] = _LOADED_FILES
) -> dict[str, str]:
    """Check every file the MANIFEST lists, and that it lists the `required` files (default:
    those a head load reads).

    Returns:
        The MANIFEST's file name -> SHA-256 (all verified).

    Raises:
        ShippedArtifactError: Naming the first file that is missing, unlisted or changed,
            with the checksum it should have.
    """
    source = Path(directory)
    expected = read_manifest(source)
    for name in required:
        if name not in expected:
            raise ShippedArtifactError(source / name, "", f"{MANIFEST_FILENAME} does not list it")
    for name, digest in expected.items():
        path = source / name
        if not path.is_file():
            raise ShippedArtifactError(path, digest, "the file is missing")
        actual = file_sha256(path)
        if actual != digest:
            raise ShippedArtifactError(path, digest, f"its sha256 is {actual}")
    return expected


def load_shipped_head(
    task: str,
    device: str = "auto",
    embedder: TextEncoder | None = None,
    directory: str | os.PathLike[str] | None = None,
) -> HeadClassifier[Any]:
    """The shipped head of `task`, after its MANIFEST checksums were verified.

    `directory` replaces the committed one (tests load a tampered copy through it). The
    model's version is ``shipped-`` plus the first 12 hex characters of the weights' SHA-256
    (a ``VERSION`` file, when listed, wins): result cache keys name it, so retrained
    weights never read an old head's cached scores.

    Raises:
        ShippedArtifactError: A file is missing or changed (nothing of it was loaded).
        ValueError: No head ships for `task`, or the checkpoint is of another task.
    """
    head_class = _HEAD_CLASSES.get(task)
    source = Path(directory) if directory is not None else shipped_head_dir(task)
    if head_class is None:
        raise ValueError(f"no shipped head for task {task!r}; shipped: {', '.join(SHIPPED_HEADS)}")
    verified = verify_manifest(source)
    version = None
    if HEAD_VERSION_FILENAME not in verified:
        version = f"shipped-{verified[HEAD_WEIGHTS_FILENAME][:_VERSION_HEX_CHARS]}"
    return head_class.load(source, device=device, version=version, embedder=embedder)
