"""The base of every config model, in a module of its own so every config module can import it
(``configs.app`` and ``configs.ingress`` import the others, so neither can be its home)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)
