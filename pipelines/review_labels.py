"""Moderator reviews as training labels for the moderation head.

The ingress records every moderation decision (``storage/audit_log.py``); a moderator's
review (``POST /api/v1/moderation/{decision_id}/review``) says what the content really was.
This module reads the reviewed decisions that kept their text (``audit.store_text: true``)
and turns each into a labelled row of the moderation head (``hate_speech``, ``offensive``),
the format ``pipelines.data`` reads from Davidson et al. files. Only the text and its targets
leave the store: no user or reviewer id, no note.

Mapping (labels win over the verdict; see ``review_targets``):

* ``labels`` keys ``hate_speech``/``hate`` set hate_speech; ``offensive``/
  ``offensive_language``/``toxic``/``profanity`` set offensive; other keys (``spam``,
  ``image_unsafe``...) say nothing about these two and are ignored;
* a label the review does not give comes from the verdict: ``approve`` = neither, ``reject``
  = offensive but not hate speech (mark hate speech with ``{"hate_speech": true}``),
  ``flag_for_review`` = unknown, so such a row is skipped;
* hate speech is offensive too (Davidson's ``offensive`` is "offensive or worse").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from configs.pipelines import ReviewLabelsSource
from configs.settings import get_settings
from models.heads import (
    DAVIDSON_HATE,
    DAVIDSON_NEITHER,
    DAVIDSON_OFFENSIVE,
    MODERATION_HEAD_LABELS,
)
from pipelines.data import LabelledTexts, Split
from storage.audit_log import DecisionRepository
from storage.documents import open_database

__all__ = [
    "LABEL_ALIASES",
    "append_training_rows",
    "load_review_labels",
    "read_review_labels",
    "review_rows",
    "review_targets",
]

logger = logging.getLogger("pipelines.review_labels")

# Review label names (as moderators and the served models spell categories) -> head label.
LABEL_ALIASES: dict[str, str] = {
    "hate_speech": "hate_speech",
    "hate": "hate_speech",
    "offensive": "offensive",
    "offensive_language": "offensive",
    "toxic": "offensive",
    "profanity": "offensive",
}
# What each verdict says about a label the review leaves out; None: nothing.
_VERDICT_DEFAULTS: dict[str, dict[str, bool] | None] = {
    "approve": {"hate_speech": False, "offensive": False},
    "reject": {"hate_speech": False, "offensive": True},
    "flag_for_review": None,
}
_PAGE_SIZE = 500


def review_targets(verdict: str, labels: Mapping[str, bool] | None) -> tuple[float, float] | None:
    """``(hate_speech, offensive)`` targets of one review, or None when it cannot say."""
    given: dict[str, bool] = {}
    for name, value in (labels or {}).items():
        head_label = LABEL_ALIASES.get(name)
        if head_label is not None:
            # Aliases of one label that disagree: any "true" wins (never under-label harm).
            given[head_label] = given.get(head_label, False) or bool(value)
    if given.get("hate_speech"):
        given["offensive"] = True
    defaults = _VERDICT_DEFAULTS.get(verdict)
    resolved: dict[str, bool] = {}
    for head_label in MODERATION_HEAD_LABELS:
        if head_label in given:
            resolved[head_label] = given[head_label]
        elif defaults is not None:
            resolved[head_label] = defaults[head_label]
        else:
            return None
    if resolved["hate_speech"]:
        resolved["offensive"] = True
    return float(resolved["hate_speech"]), float(resolved["offensive"])


def review_rows(decisions: Iterable[Mapping[str, Any]]) -> LabelledTexts:
    """Labelled moderation rows from reviewed decision documents (text and targets only).

    Decisions without text or review, or whose review cannot say (see module docstring),
    are skipped; the same text reviewed twice keeps its latest review.
    """
    by_text: dict[str, tuple[float, float, Any]] = {}
    for decision in decisions:
        text, review = decision.get("text"), decision.get("review")
        if not isinstance(text, str) or not text.strip() or not isinstance(review, Mapping):
            continue
        targets = review_targets(str(review.get("verdict", "")), review.get("labels"))
        if targets is None:
            continue
        reviewed_at = review.get("reviewed_at")
        previous = by_text.get(text)
        if previous is None or _later(reviewed_at, previous[2]):
            by_text[text] = (*targets, reviewed_at)
    texts = list(by_text)
    target_rows = np.array(
        [[by_text[t][0], by_text[t][1]] for t in texts], dtype=np.float32
    ).reshape(-1, len(MODERATION_HEAD_LABELS))
    classes = np.where(
        target_rows[:, 0] > 0,
        DAVIDSON_HATE,
        np.where(target_rows[:, 1] > 0, DAVIDSON_OFFENSIVE, DAVIDSON_NEITHER),
    ).astype(np.int64)
    return LabelledTexts(texts, target_rows, classes, MODERATION_HEAD_LABELS)


def _later(candidate: Any, current: Any) -> bool:
    try:
        return bool(candidate is not None and (current is None or candidate >= current))
    except TypeError:  # mixed naive/aware datetimes: keep the first
        return False


def read_review_labels(
    repository: DecisionRepository, max_rows: int | None = None
) -> LabelledTexts:
    """Every reviewed decision with text in ``repository`` (at most ``max_rows``), as rows."""
    decisions: list[dict[str, Any]] = []
    after: str | None = None
    while max_rows is None or len(decisions) < max_rows:
        limit = _PAGE_SIZE if max_rows is None else min(_PAGE_SIZE, max_rows - len(decisions))
        page = repository.reviewed_with_text(after, limit)
        if not page:
            break
        decisions.extend(page)
        after = page[-1]["_id"]
    return review_rows(decisions)


def load_review_labels(source: ReviewLabelsSource) -> LabelledTexts:
    """Rows from the audit log that ``source`` names (MongoDB; default ``MONGODB_URL``)."""
    url = source.mongodb_url if source.mongodb_url is not None else get_settings().mongodb_url
    if not url:
        logger.warning(
            "review_labels: no MongoDB URL (MONGODB_URL is empty); the embedded audit store "
            "lives inside the ingress replica, so no reviewed decisions are read"
        )
        return review_rows([])
    database, _ = open_database(url, source.database)
    return read_review_labels(DecisionRepository(database), source.max_rows)


def append_training_rows(
    data: LabelledTexts, split: Split, extra: LabelledTexts
) -> tuple[LabelledTexts, Split]:
    """``data`` with ``extra`` appended to the TRAINING split only.

    Validation and test keep only file rows, so metrics stay comparable between runs; an
    extra row whose text is already in validation or test is dropped (it would leak).
    """
    held_out = {data.texts[i] for i in (*split.validation, *split.test)}
    keep = np.array([i for i, text in enumerate(extra.texts) if text not in held_out], dtype=int)
    if len(keep) == 0:
        return data, split
    extra = extra.subset(keep)
    if extra.targets.shape[1:] != data.targets.shape[1:] or extra.labels != data.labels:
        raise ValueError(
            f"review rows have labels {extra.labels}, the job's data {data.labels}; "
            "review labels apply to the moderation head only"
        )
    combined = LabelledTexts(
        [*data.texts, *extra.texts],
        np.concatenate([data.targets, extra.targets.astype(data.targets.dtype)]),
        np.concatenate([data.classes, extra.classes.astype(data.classes.dtype)]),
        data.labels,
    )
    appended = np.arange(len(data), len(combined))
    return combined, Split(np.concatenate([split.train, appended]), split.validation, split.test)
