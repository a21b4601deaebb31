"""Moderation policy: scores + thresholds -> approve / flag_for_review / reject."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from configs.ingress import ModerationPolicyConfig
from models.policy import decide_action, degraded_decision

FLAG = 0.5
REJECT = 0.9


def decide(
    scores: dict[str, float],
    flag: dict[str, float] | None = None,
    reject: dict[str, float] | None = None,
) -> tuple[str, list[str]]:
    return decide_action(scores, flag or {}, reject or {}, FLAG, REJECT)


@pytest.mark.parametrize(
    ("score", "action"),
    [
        (0.0, "approve"),
        (0.4999, "approve"),
        (0.5, "flag_for_review"),
        (0.8999, "flag_for_review"),
        (0.9, "reject"),
        (1.0, "reject"),
    ],
)
def test_default_threshold_boundaries_are_inclusive(score: float, action: str) -> None:
    got_action, flagged = decide({"toxic": score, "insult": 0.1})
    assert got_action == action
    assert flagged == ([] if action == "approve" else ["toxic"])


def test_category_thresholds_override_defaults() -> None:
    # Stricter for threats: 0.3 flags, 0.6 rejects.
    strict = {"threat": 0.3}, {"threat": 0.6}
    assert decide({"threat": 0.35}, *strict) == ("flag_for_review", ["threat"])
    assert decide({"threat": 0.6}, *strict) == ("reject", ["threat"])
    # The override is per category: other categories keep the defaults.
    assert decide({"toxic": 0.35}, *strict) == ("approve", [])
    # Looser for obscene: 0.95 rejects, so 0.92 is only flagged.
    assert decide({"obscene": 0.92}, reject={"obscene": 0.95}) == (
        "flag_for_review",
        ["obscene"],
    )


def test_flagged_categories_sorted_by_score_descending() -> None:
    action, flagged = decide({"a": 0.6, "b": 0.95, "c": 0.2, "d": 0.7, "e": 0.7})
    assert action == "reject"
    assert flagged == ["b", "d", "e", "a"]


def test_reject_names_its_cause_even_with_reject_below_flag() -> None:
    assert decide({"threat": 0.4}, flag={"threat": 0.8}, reject={"threat": 0.3}) == (
        "reject",
        ["threat"],
    )


def test_empty_scores_never_approve() -> None:
    assert decide({}) == ("flag_for_review", [])


def test_nan_score_is_flagged_not_approved() -> None:
    action, flagged = decide({"toxic": math.nan, "insult": 0.6})
    assert action == "flag_for_review"
    assert flagged == ["toxic", "insult"]


def test_nan_threshold_is_rejected() -> None:
    with pytest.raises(ValueError, match="threat"):
        decide({"threat": 0.1}, flag={"threat": math.nan})
    with pytest.raises(ValueError, match="default_reject"):
        decide_action({"x": 0.1}, {}, {}, 0.5, math.nan)


@pytest.mark.parametrize(
    ("action", "degraded_action", "expected"),
    [
        ("approve", "flag_for_review", "flag_for_review"),
        ("approve", "reject", "reject"),
        ("flag_for_review", "flag_for_review", "flag_for_review"),
        ("flag_for_review", "reject", "reject"),
        ("reject", "flag_for_review", "reject"),  # a stricter verdict stands
    ],
)
def test_a_degraded_decision_is_the_stricter_and_never_approve(
    action: str, degraded_action: str, expected: str
) -> None:
    assert degraded_decision(action, degraded_action) == expected


def test_degraded_action_approve_or_an_unknown_action_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="degraded_action is 'approve'"):
        degraded_decision("flag_for_review", "approve")
    with pytest.raises(ValueError, match="degraded_action is 'ignore'"):
        degraded_decision("approve", "ignore")
    with pytest.raises(ValueError, match="action is 'maybe'"):
        degraded_decision("maybe", "reject")


def test_degraded_action_in_the_config_defaults_to_flag_and_refuses_approve() -> None:
    assert ModerationPolicyConfig().degraded_action == "flag_for_review"
    with pytest.raises(ValidationError, match="degraded_action"):
        ModerationPolicyConfig.model_validate({"degraded_action": "approve"})
