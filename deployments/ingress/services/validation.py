"""Checks of request values that several services share; each raises InvalidInputError naming
the field and the fix (422 over HTTP, INVALID_ARGUMENT over gRPC).
"""

from __future__ import annotations

from configs.ingress import LimitsConfig
from models.exceptions import InvalidInputError


def check_text(value: str, field_name: str, limits: LimitsConfig) -> str:
    """The text itself, or InvalidInputError when it is blank or over ``max_text_chars``."""
    if not value.strip():
        raise InvalidInputError(field_name, f"{field_name} is empty; send some text")
    limit = limits.max_text_chars
    if len(value) > limit:
        raise InvalidInputError(
            field_name, f"{field_name} has {len(value)} characters; the limit is {limit}"
        )
    return value


def check_texts(values: list[str], limits: LimitsConfig) -> list[str]:
    """Texts of a batch request, each checked; the count is bounded by ``max_batch_texts``."""
    limit = limits.max_batch_texts
    if not values:
        raise InvalidInputError("texts", "texts is empty; send at least one text")
    if len(values) > limit:
        raise InvalidInputError(
            "texts", f"texts has {len(values)} items; the limit is {limit} per request"
        )
    return [check_text(v, f"texts[{i}]", limits) for i, v in enumerate(values)]


def check_id(value: str, field_name: str, max_chars: int) -> str:
    """A non-blank id of at most ``max_chars`` characters, else 422 naming the field."""
    if not value.strip():
        raise InvalidInputError(field_name, f"{field_name} is blank; send the id")
    if len(value) > max_chars:
        raise InvalidInputError(
            field_name, f"{field_name} has {len(value)} characters; ids may have {max_chars}"
        )
    return value
