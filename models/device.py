"""Device selection and checkpoint identity, shared by all torch models."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

# Re-exported for callers outside the product (bench/) that import it from here.
from models.answers import ModelInfo

__all__ = [
    "CPU_PROVIDER",
    "CUDA_PROVIDER",
    "ModelInfo",
    "checkpoint_version",
    "cuda_status",
    "onnx_providers",
    "onnx_session_device",
    "require_checkpoint_dir",
    "resolve_device",
]

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

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


def onnx_providers(requested: str = "auto") -> list[str | tuple[str, dict[str, str]]]:
    """The onnxruntime execution providers for a configured device string.

    ``"auto"``: CUDA first when this onnxruntime has the CUDA provider (the onnxruntime-gpu
    build of the GPU image), then the CPU; ``"cpu"``: the CPU only; ``"cuda"`` / ``"cuda:N"``:
    that device, then the CPU. Inside a Ray replica given a GPU, device 0 is the replica's GPU
    (Ray sets CUDA_VISIBLE_DEVICES). onnxruntime itself falls back to the CPU when the provider
    is present but no GPU is: `onnx_session_device` says what a session got.

    Raises:
        ValueError: The string is not accepted, or CUDA was requested and this onnxruntime has
            no CUDA provider.
    """
    import onnxruntime

    value = requested.strip().lower()
    if value == "cpu":
        return [CPU_PROVIDER]
    if value != "auto" and value != "cuda" and not value.startswith("cuda:"):
        raise ValueError(
            f'device {requested!r} is not supported; use "auto", "cpu", "cuda" or "cuda:N"'
        )
    index = value.partition(":")[2] or "0"
    if not index.isdigit():
        raise ValueError(f'device {requested!r}: the index must be an integer, e.g. "cuda:0"')
    if CUDA_PROVIDER in onnxruntime.get_available_providers():
        return [(CUDA_PROVIDER, {"device_id": index}), CPU_PROVIDER]
    if value != "auto":
        raise ValueError(
            f"device {requested!r} was requested but onnxruntime has no {CUDA_PROVIDER} "
            '(install onnxruntime-gpu: the GPU image); use "auto" or "cpu"'
        )
    return [CPU_PROVIDER]


def onnx_session_device(session: object) -> str:
    """``"cuda:N"`` when an onnxruntime session runs on the CUDA provider, else ``"cpu"``."""
    providers = list(session.get_providers())  # type: ignore[attr-defined]
    if CUDA_PROVIDER not in providers:
        return "cpu"
    options = session.get_provider_options().get(CUDA_PROVIDER, {})  # type: ignore[attr-defined]
    return f"cuda:{options.get('device_id', '0')}"


def cuda_status() -> str:
    """Why a model here would or would not run on CUDA, for torch and onnxruntime (for
    /health: a replica given a GPU whose model runs on the CPU says why)."""
    import onnxruntime

    if torch.cuda.is_available():
        torch_part = f"torch sees {torch.cuda.device_count()} CUDA device(s)"
    elif torch.version.cuda is None:
        torch_part = f"torch {torch.__version__} is a CPU build (no CUDA)"
    else:
        torch_part = "torch has CUDA but sees no device (no driver, or no GPU visible)"
    if CUDA_PROVIDER in onnxruntime.get_available_providers():
        onnx_part = f"onnxruntime has {CUDA_PROVIDER}"
    else:
        onnx_part = f"onnxruntime has no {CUDA_PROVIDER} (onnxruntime-gpu not installed)"
    return f"{torch_part}; {onnx_part}"


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
