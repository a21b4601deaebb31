"""Turn moderation scores into an action. Pure Python: no model, no torch."""

from __future__ import annotations

import math
from collections.abc import Mapping

APPROVE = "approve"
FLAG_FOR_REVIEW = "flag_for_review"
REJECT = "reject"
# Strictest last: a degraded decision never moves down this order.
_SEVERITY = {APPROVE: 0, FLAG_FOR_REVIEW: 1, REJECT: 2}


def decide_action(
    scores: Mapping[str, float],
    flag_thresholds: Mapping[str, float],
    reject_thresholds: Mapping[str, float],
    default_flag: float,
    default_reject: float,
) -> tuple[str, list[str]]:
    """Decide what to do with a text from its per-category moderation scores.

    A category's threshold is its entry in `flag_thresholds` / `reject_thresholds`, falling
    back to `default_flag` / `default_reject`. Comparisons are inclusive (``>=``).

    Returns:
        ``(action, flagged_categories)``. action is ``"reject"`` if any score reaches its
        reject threshold, else ``"flag_for_review"`` if any reaches its flag threshold, else
        ``"approve"``. flagged_categories are the categories at or above their flag
        threshold (or their reject threshold, should one be configured lower, so a
        rejection always names its cause), sorted by score descending, ties by name.

    Fail-safe rules (why): a moderation that produced no scores, or a NaN score, means
    the model did not actually judge the text, so it must never be approved silently:
    empty `scores` gives ``("flag_for_review", [])``; a NaN category is flagged (listed
    first) and the action is at least ``"flag_for_review"``.

    Raises:
        ValueError: A threshold (default or per category) is NaN, which would make every
            comparison false and silently approve everything.
    """
    _check_threshold("default_flag", default_flag)
    _check_threshold("default_reject", default_reject)
    for source_name, source in (
        ("flag_thresholds", flag_thresholds),
        ("reject_thresholds", reject_thresholds),
    ):
        for category, threshold in source.items():
            _check_threshold(f"{source_name}[{category!r}]", threshold)

    if not scores:
        return FLAG_FOR_REVIEW, []

    rejected = False
    flagged: list[tuple[float, str]] = []
    for category, raw_score in scores.items():
        score = float(raw_score)
        if math.isnan(score):
            # Sort key +inf puts unjudged categories first for the reviewer.
            flagged.append((math.inf, category))
            continue
        flag_at = float(flag_thresholds.get(category, default_flag))
        reject_at = float(reject_thresholds.get(category, default_reject))
        if score >= reject_at:
            rejected = True
        if score >= min(flag_at, reject_at):
            flagged.append((score, category))

    flagged.sort(key=lambda item: (-item[0], item[1]))
    categories = [category for _, category in flagged]
    if rejected:
        return REJECT, categories
    if categories:
        return FLAG_FOR_REVIEW, categories
    return APPROVE, []


def degraded_decision(action: str, degraded_action: str) -> str:
    """The action of an answer a fallback model gave because the moderation node failed.

    A fallback is a weaker model judging alone, so its ``approve`` must not reach users
    unreviewed: the decision is the stricter of ``action`` and ``degraded_action``
    (``flag_for_review`` or ``reject``), never ``approve``.

    Raises:
        ValueError: ``degraded_action`` is ``approve`` or not an action; or ``action`` is
            not one.
    """
    for name, value in (("action", action), ("degraded_action", degraded_action)):
        if value not in _SEVERITY:
            raise ValueError(f"{name} is {value!r}; use one of {sorted(_SEVERITY)}")
    if degraded_action == APPROVE:
        raise ValueError(
            "degraded_action is 'approve'; a fallback must never approve unreviewed, "
            "use 'flag_for_review' or 'reject'"
        )
    return action if _SEVERITY[action] >= _SEVERITY[degraded_action] else degraded_action


def _check_threshold(name: str, value: float) -> None:
    """Reject NaN thresholds, naming the setting to fix."""
    if math.isnan(float(value)):
        raise ValueError(
            f"{name} is NaN; set it to a number in [0, 1] (a value above 1 disables it)"
        )
