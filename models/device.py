"""Device selection and checkpoint identity, shared by all torch models."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

# Re-exported for callers outside the product (bench/) that import it from here.
from models.answers import ModelInfo

__all__ = ["ModelInfo", "checkpoint_version", "require_checkpoint_dir", "resolve_device"]

# Read weights in 1 MiB pieces: multi-GB checkpoints must not be loaded into memory just
# to be hashed.
_HASH_CHUNK_BYTES = 1 << 20
# Length of the hex digest prefix used as a version id: short enough for logs and metric
# labels, long enough that two different checkpoints collide with negligible probability.
_VERSION_HEX_CHARS = 12


def resolve_device(requested: str = "auto") -> torch.device:
    """Turn a configured device string into a `torch.device`.

    Args:
        requested: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``. Case and surrounding whitespace are ignored.

    Returns:
        The device to place the model and its inputs on.

    Raises:
        ValueError: The string is not one of the accepted forms, or CUDA was requested on a
            machine where it is unavailable (or the index does not exist).
    """
    value = requested.strip().lower()
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if value == "cpu":
        return torch.device("cpu")
    if value == "cuda" or value.startswith("cuda:"):
        try:
            device = torch.device(value)
        except RuntimeError as exc:
            raise ValueError(
                f"device {requested!r} is not a valid CUDA device string; "
                'use "cuda", "cuda:N" with an integer N, "auto" or "cpu"'
            ) from exc
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {requested!r} was requested but CUDA is not available on this "
                'machine; use "auto" (picks CUDA only when present) or "cpu"'
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device {requested!r} does not exist: this machine has {count} CUDA "
                f'device(s), cuda:0..cuda:{count - 1}; use one of those, "auto" or "cpu"'
            )
        return device
    raise ValueError(
        f'device {requested!r} is not supported; use "auto", "cpu", "cuda" or "cuda:N"'
    )


def require_checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    """Check that `path` is a local Hugging Face checkpoint directory and return it.

    Raises:
        FileNotFoundError: The path does not exist, is not a directory, or has no
            ``config.json`` (i.e. it is not a ``save_pretrained`` output directory).
    """
    directory = Path(path)
    if not directory.exists():
        raise FileNotFoundError(
            f"checkpoint path {str(directory)!r} does not exist; expected a local directory "
            "written by save_pretrained (config.json, tokenizer files, weights)"
        )
    if not directory.is_dir():
        raise FileNotFoundError(
            f"checkpoint path {str(directory)!r} is a file, not a directory; point it at the "
            "directory that contains config.json, the tokenizer files and the weights"
        )
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"checkpoint directory {str(directory)!r} has no config.json; expected a "
            "directory written by save_pretrained (config.json, tokenizer files, weights)"
        )
    return directory


def _weight_files(directory: Path) -> list[Path]:
    """List the files whose bytes define the checkpoint's weights, in a stable order."""
    candidates = {
        *directory.glob("*.safetensors"),
        *directory.glob("pytorch_model*.bin"),
    }
    return sorted((p for p in candidates if p.is_file()), key=lambda p: p.name)


def checkpoint_version(path: str | os.PathLike[str]) -> str:
    """Return a short version id for a local checkpoint directory.

    If ``<path>/VERSION`` exists and is non-empty, its stripped content is the version (so a
    release process can pin a readable id). Otherwise the id is the first 12 hex characters
    of a SHA-256 over the weight files (``*.safetensors``, ``pytorch_model*.bin``, sorted by
    name) followed by ``config.json``. Files are streamed in chunks, never read whole.

    Raises:
        FileNotFoundError: `path` is not a checkpoint directory (see
            `require_checkpoint_dir`) or it holds no weight files.
    """
    directory = require_checkpoint_dir(path)
    version_file = directory / "VERSION"
    if version_file.is_file():
        pinned = version_file.read_text(encoding="utf-8").strip()
        if pinned:
            return pinned
    weights = _weight_files(directory)
    if not weights:
        raise FileNotFoundError(
            f"checkpoint directory {str(directory)!r} holds no weight files; expected "
            "model.safetensors (or *.safetensors shards, or pytorch_model.bin)"
        )
    digest = hashlib.sha256()
    for file in [*weights, directory / "config.json"]:
        # Name and size are hashed too, so renaming a shard changes the id and file
        # boundaries cannot shift between files without changing the digest.
        digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()[:_VERSION_HEX_CHARS]
