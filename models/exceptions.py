"""Domain errors. Raised anywhere; only the ingress maps them to HTTP status codes."""

from __future__ import annotations


class SocialPlayError(Exception):
    """Base of our domain errors."""


class InvalidInputError(SocialPlayError):
    """A request field is invalid; ``field`` names it (for example ``texts[3]``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class FeatureNotEnabledError(InvalidInputError):
    """The request asks for a feature this deployment does not run."""


class PayloadTooLargeError(SocialPlayError):
    """The request body is over the configured limit."""

    def __init__(self, size_bytes: int | None, limit_bytes: int) -> None:
        size = "unknown size" if size_bytes is None else f"{size_bytes} bytes"
        super().__init__(
            f"request body ({size}) is over the limit of {limit_bytes} bytes; "
            "send less per request or use several requests"
        )
        self.limit_bytes = limit_bytes


class ImageInputError(InvalidInputError):
    """An image (or its URL) was refused; ``code`` names the reason for clients.

    ``status`` is the HTTP status the ingress answers with: 413 for size caps, 422 otherwise.
    """

    def __init__(self, field: str, message: str, code: str, status: int = 422) -> None:
        super().__init__(field, message)
        self.code = code
        self.status = status


class NotFoundError(SocialPlayError):
    """The thing a request names does not exist; ``code`` names what for clients."""

    def __init__(self, field: str, message: str, code: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code


class NodeUnavailableError(SocialPlayError):
    """A node with no fallback could not answer; the message says what to do."""

    def __init__(
        self, node: str, reason: str, *, label: str = "", what: str = "answer", hint: str = "retry"
    ) -> None:
        message = f"the {label or node} could not {what} ({reason}); {hint}"
        super().__init__(message)
        self.code = f"{node}_unavailable"
        self.message = message


class OverloadedError(SocialPlayError):
    """The service is at capacity and shed this request; retry after ``retry_after_s``.

    The ingress answers 503 with a ``Retry-After`` header (whole seconds, rounded up).
    """

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
