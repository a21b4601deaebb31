"""The base of every config model, and the field types several of them share, in a module of
its own so every config module can import it (``configs.app`` and ``configs.ingress`` import
the others, so neither can be its home).

A shared field type carries its bounds and, where every user means the same thing, its
description; the model that uses it gives the default (``device: Device = "auto"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are an error, not silently ignored.

    A field's description is the docstring under it (``configs.docs`` writes the reference
    from them), or the one its shared field type carries.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


ModelT = TypeVar("ModelT", bound=BaseModel)


def load_yaml_file(path: str | Path, model: type[ModelT], what: str, example: str) -> ModelT:
    """Read and validate one YAML file; errors name `what` it is, the file and the bad field.

    `example` is a file of that kind in the checkout, offered when `path` cannot be read.
    """
    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(
            f"{what} {str(source)!r} cannot be read ({exc.strerror}); pass an existing YAML "
            f"file, e.g. {example}"
        ) from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} {str(source)!r} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{what} {str(source)!r} must be a YAML mapping of fields")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{what} {str(source)!r} is invalid:\n{exc}") from exc


# A wait, period or age in seconds that must be positive (timeouts, half-lives, intervals).
PositiveSeconds = Annotated[float, Field(gt=0)]
# A share, probability or score threshold.
Fraction = Annotated[float, Field(ge=0, le=1)]

RedisKeyPrefix = Annotated[str, Field(min_length=1, max_length=64)]

Device = Annotated[
    str, Field(description='"auto" (GPU when the replica has one), "cpu" or "cuda[:N]".')
]

# The ONNX backend of a transformer model (the Embedder's MiniLM, a text classifier);
# `onnx_backend_rules` checks them together.
OnnxBackend = Annotated[
    Literal["torch", "onnx"],
    Field(
        description=(
            '"torch" (the checkpoint at `path`) or "onnx" (a gated artifact at `onnx_path` '
            "written by `python -m pipelines.export_onnx`, run with onnxruntime on CPU). A "
            'text classifier: kind "transformer" only, exported with `--model classifier`; '
            "windows, labels and scores as torch."
        )
    ),
]
OnnxPath = Annotated[
    str | None,
    Field(
        description=(
            "backend onnx: the artifact directory (model.onnx, tokenizer, a classifier's "
            "config.json, a passing gate.json); one without a passing accuracy gate is "
            "refused at load."
        )
    ),
]
OnnxThreads = Annotated[
    int,
    Field(
        ge=0,
        le=64,
        description="backend onnx: onnxruntime intra-op threads per call; 0 = one per core.",
    ),
]


def onnx_backend_rules(
    prefix: str, backend: str, onnx_path: str | None, device: str, export_command: str
) -> tuple[tuple[bool, str], ...]:
    """The checks of `OnnxBackend`, `OnnxPath` and the device, as ``(broken, message)`` pairs.

    `prefix` names the block in messages (``"moderation_model."``, or ``""`` at the top of
    the model); `export_command` is what writes the artifact.
    """
    onnx = backend == "onnx"
    return (
        (
            onnx and not onnx_path,
            f"{prefix}backend is 'onnx' but {prefix}onnx_path is empty; set onnx_path to a "
            f"directory written by `{export_command}`, or use backend 'torch'",
        ),
        (
            not onnx and onnx_path is not None,
            f"{prefix}onnx_path is set but {prefix}backend is 'torch', so it would be ignored; "
            "set backend: onnx to serve it, or remove onnx_path",
        ),
    )


def first_broken_rule(rules: tuple[tuple[bool, str], ...]) -> None:
    """Raise ValueError with the message of the first broken ``(broken, message)`` rule."""
    for broken, message in rules:
        if broken:
            raise ValueError(message)
