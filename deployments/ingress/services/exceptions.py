"""Domain errors of the ingress's services, besides those of ``models.exceptions``.

The services raise them; ``deployments/ingress/errors.py`` maps them to HTTP (404, 503).
"""

from __future__ import annotations

import logging

from deployments.ingress.calls import failure_reason
from models.exceptions import SocialPlayError

logger = logging.getLogger("ray.serve")


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


def node_unavailable(
    node: str, exc: BaseException, *, label: str = "", what: str = "answer", hint: str = "retry"
) -> NodeUnavailableError:
    """The error for ``node``'s failed call (``exc``), logged by reason only.

    ``label`` names the node in the message (default: ``node``); nothing about the request
    is logged.
    """
    reason = failure_reason(exc)
    logger.warning("%s unavailable (%s)", node, reason)
    return NodeUnavailableError(node, reason, label=label, what=what, hint=hint)
