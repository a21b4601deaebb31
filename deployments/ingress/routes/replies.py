"""Smart-reply route of the ingress.

The moderation node and the SmartReply node are asked concurrently (``asyncio.gather``): a
suggestion costs no extra round trip for moderation. When moderation flags or rejects the
message the suggestions are dropped and ``reason`` says so (a cheerful canned reply to abuse is
worse than none). If the moderation node and its fallback both fail, the verdict is
``flag_for_review`` (see ``routes_text``), so nothing is suggested then either.
"""

import asyncio
import logging
from dataclasses import asdict
from typing import Any

from fastapi import Depends

from deployments.ingress.http import app, call_node, check_text, failure_reason, require_api_key
from deployments.ingress.routes.base import RouteGroup
from deployments.ingress.schemas.common import ModelRef, ModerationResult
from deployments.ingress.schemas.social import ReplyRequest, ReplyResult
from models.exceptions import InvalidInputError
from models.replies import REASON_FLAGGED, ReplyQuery

logger = logging.getLogger("ray.serve")

FEATURE = "smart replies"
REASON_UNAVAILABLE = "replies_unavailable"
FLAGGING_ACTIONS = frozenset({"flag_for_review", "reject"})


class ReplyRoutes(RouteGroup):
    """Reply suggestions."""

    async def _moderate(self, texts: list[str]) -> list[ModerationResult]:
        # Provided by TextRoutes (the Ingress has both); declared for the type checker.
        raise NotImplementedError

    @app.post(
        "/api/v1/replies/suggest",
        response_model=ReplyResult,
        tags=["Replies"],
        dependencies=[Depends(require_api_key)],
    )
    async def suggest_replies(self, body: ReplyRequest) -> Any:
        """Up to `limit` short, diverse replies to a message, or the reason there are none."""
        limits = self.config.replies
        message = check_text(body.message, "message")
        if not 1 <= body.limit <= limits.max_limit:
            raise InvalidInputError(
                "limit", f"limit is {body.limit}; ask for 1 to {limits.max_limit} suggestions"
            )
        if len(body.context) > limits.max_context_messages:
            raise InvalidInputError(
                "context",
                f"context has {len(body.context)} messages; the limit is "
                f"{limits.max_context_messages} (send the most recent ones)",
            )
        context = [check_text(c, f"context[{i}]") for i, c in enumerate(body.context)]
        handle = self.node("replies", FEATURE)
        request = ReplyQuery(message=message, context=tuple(context), limit=body.limit)
        outcomes: tuple[Any, Any] = await asyncio.gather(
            self._moderate([message]),
            call_node(handle.predict, limits.timeout_s, request),
            return_exceptions=True,
        )
        verdicts, reply = outcomes
        if isinstance(verdicts, BaseException):
            # _moderate answers from its fallback; only a bug gets here: suggest nothing.
            logger.error("moderation for replies failed (%s)", type(verdicts).__name__)
            action = "flag_for_review"
        else:
            action = verdicts[0].action
        if action in FLAGGING_ACTIONS:
            return ReplyResult(suggestions=[], reason=REASON_FLAGGED, moderation_action=action)
        if isinstance(reply, BaseException):
            reason = failure_reason(reply)
            logger.warning("smart reply node unavailable (%s)", reason)
            return ReplyResult(
                suggestions=[],
                reason=REASON_UNAVAILABLE,
                moderation_action=action,
                degraded=True,
                degraded_reason=reason,
            )
        return ReplyResult(
            **asdict(reply.result), moderation_action=action, model=ModelRef(**asdict(reply.model))
        )
