"""The base of every config model, in a module of its own so every config module can import it
(``configs.app`` and ``configs.ingress`` import the others, so neither can be its home)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def section(model: type[StrictModel], description: str) -> Any:
    """A nested block of config (``field: Model = section(Model, "...")``): omitted, it
    takes `model`'s defaults."""
    return Field(default_factory=model, description=description)
