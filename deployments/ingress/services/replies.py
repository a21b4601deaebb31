"""Smart replies: suggestions for a message, never for one that moderation flags.

The moderation service and the SmartReply node are asked concurrently (``asyncio.gather``): a
suggestion costs no extra round trip for moderation. When moderation flags or rejects the
message the suggestions are dropped and ``reason`` says so (a cheerful canned reply to abuse is
worse than none). If the moderation node and its fallback both fail, the verdict is
``flag_for_review`` (see ``services/text.py``), so nothing is suggested then either.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

from deployments.ingress.calls import call_node, failure_reason
from deployments.ingress.schemas.common import ModelRef
from deployments.ingress.schemas.moderation import ModerationResult
from deployments.ingress.schemas.replies import ReplyResult
from deployments.ingress.services.text import moderate
from deployments.ingress.services.validation import check_text
from deployments.ingress.state import IngressState
from models.answers import Answer
from models.exceptions import InvalidInputError
from models.replies import REASON_FLAGGED, ReplyDecision, ReplyQuery

logger = logging.getLogger("ray.serve")

FEATURE = "smart replies"
REASON_UNAVAILABLE = "replies_unavailable"
FLAGGING_ACTIONS = frozenset({"flag_for_review", "reject"})


async def suggest_replies(
    state: IngressState, message: str, context: list[str], limit: int
) -> ReplyResult:
    """Up to ``limit`` short, diverse replies to ``message``, or the reason there are none."""
    limits = state.config.replies
    message = check_text(message, "message", state.config.limits)
    if not 1 <= limit <= limits.max_limit:
        raise InvalidInputError(
            "limit", f"limit is {limit}; ask for 1 to {limits.max_limit} suggestions"
        )
    if len(context) > limits.max_context_messages:
        raise InvalidInputError(
            "context",
            f"context has {len(context)} messages; the limit is "
            f"{limits.max_context_messages} (send the most recent ones)",
        )
    context = [check_text(c, f"context[{i}]", state.config.limits) for i, c in enumerate(context)]
    handle = state.node("replies", FEATURE)
    request = ReplyQuery(message=message, context=tuple(context), limit=limit)
    outcomes: tuple[list[ModerationResult] | BaseException, Answer[ReplyDecision] | BaseException]
    outcomes = await asyncio.gather(
        moderate(state, [message]),
        call_node(state, handle.predict, limits.timeout_s, request),
        return_exceptions=True,
    )
    verdicts, reply = outcomes
    if isinstance(verdicts, BaseException):
        # moderate answers from its fallback; only a bug gets here: suggest nothing.
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
        **asdict(reply.result), moderation_action=action, model=ModelRef.of(reply.model)
    )
