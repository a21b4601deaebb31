"""Moderation of a post before it is published: its text and its images, worst verdict wins."""

from __future__ import annotations

import asyncio

from deployments.ingress.schemas.images import PostImageResult
from deployments.ingress.schemas.moderation import ModerationResult, PostModerationResult
from deployments.ingress.services.audit import audited
from deployments.ingress.services.images import check_post_images, moderate_post_images
from deployments.ingress.services.text import moderate
from deployments.ingress.services.validation import check_text
from deployments.ingress.state import IngressState

_ACTION_ORDER = {"approve": 0, "flag_for_review": 1, "reject": 2}


def combine_post_verdict(
    text: ModerationResult, images: list[PostImageResult]
) -> PostModerationResult:
    """One verdict for a post: the worst of its text and images.

    An image that could not be fetched or decoded makes the post at least flag_for_review
    (category ``image_unchecked``): a post is never approved with an image nobody looked at.
    """
    action = text.action
    flagged = list(text.flagged_categories)
    reasons = [text.degraded_reason] if text.degraded_reason else []
    for item in images:
        if item.result is None:
            candidate, category = "flag_for_review", "image_unchecked"
        else:
            candidate, category = item.result.action, f"image_{item.result.rating}"
            if item.result.degraded_reason:
                reasons.append(f"images[{item.index}]: {item.result.degraded_reason}")
        if _ACTION_ORDER[candidate] > _ACTION_ORDER[action]:
            action = candidate  # type: ignore[assignment]
        if candidate != "approve" and category not in flagged:
            flagged.append(category)
    return PostModerationResult(
        **{
            **text.model_dump(),
            "is_safe": action == "approve",
            "action": action,
            "flagged_categories": flagged,
            "degraded": bool(reasons),
            "degraded_reason": "; ".join(reasons) or None,
        },
        text_moderation=text,
        image_moderation=images,
    )


async def moderate_post(
    state: IngressState, content: str, image_urls: list[str] | None, user_id: str | None
) -> PostModerationResult:
    """The post's verdict (text and images judged concurrently), recorded in the audit log."""
    content = check_text(content, "content", state.config.limits)
    if not image_urls:
        text_result = (await moderate(state, [content], user_id))[0]
        post = PostModerationResult(**text_result.model_dump(), text_moderation=text_result)
    else:
        # 422 feature_not_enabled (no NSFW node) or too many URLs, before any work starts.
        nsfw = check_post_images(state, image_urls)
        text_results, image_results = await asyncio.gather(
            moderate(state, [content], user_id), moderate_post_images(state, nsfw, image_urls)
        )
        post = combine_post_verdict(text_results[0], image_results)
    return audited(state, "moderate", [content], [post], user_id)[0]
