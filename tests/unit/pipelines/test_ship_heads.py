"""Thresholds chosen for a precision target (pipelines.ship_heads), on tiny made-up scores."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.ship_heads import DISABLED, choose_threshold, moderation_thresholds


def test_the_lowest_threshold_that_keeps_the_precision_is_chosen() -> None:
    # Ten positives on top, then alternating negatives and positives below 0.5.
    scores = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91, 0.9, 0.4, 0.35, 0.3])
    positive = np.array([1] * 10 + [0, 1, 0], dtype=bool)
    clean = ~positive
    chosen = choose_threshold(scores, positive, clean, 0.9, min_flagged=5)
    # Down to 0.35: 11 of 12 flagged are positives (0.917 >= 0.9); 0.3 drops it to 0.846.
    assert chosen.reached and chosen.threshold == pytest.approx(0.35)
    assert chosen.precision == pytest.approx(11 / 12) and chosen.recall == 1.0
    assert chosen.flagged == 12 and chosen.clean_hit_rate == pytest.approx(0.5)


def test_a_dip_below_the_target_stops_the_walk_and_few_rows_do_not_count() -> None:
    scores = np.linspace(1.0, 0.01, 100)
    positive = np.ones(100, dtype=bool)
    positive[0] = False  # the top row is a false positive: precision 0 at one flagged row
    positive[30:40] = False  # a failing stretch; the rows below it are positives again
    chosen = choose_threshold(scores, positive, ~positive, 0.8, min_flagged=5)
    # Cuts flagging fewer than 5 rows are noise and skipped; the stretch at 30-39 ends the
    # walk, so the perfect-looking rows below it are never reached.
    assert chosen.reached and 0.6 < chosen.threshold < 0.8
    assert chosen.precision >= 0.8


def test_an_unreachable_target_disables_the_action() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    positive = np.array([False, True, False, True])
    chosen = choose_threshold(scores, positive, ~positive, 0.95, min_flagged=1)
    assert not chosen.reached and chosen.threshold == DISABLED and chosen.flagged == 0


def test_moderation_thresholds_read_davidson_classes_per_category() -> None:
    # Davidson classes: 0 hate, 1 offensive, 2 neither. Columns: hate_speech, offensive.
    classes = np.array([0] * 30 + [1] * 30 + [2] * 30)
    hate = np.concatenate([np.full(30, 0.9), np.full(30, 0.5), np.full(30, 0.1)])
    offensive = np.concatenate([np.full(30, 0.95), np.full(30, 0.9), np.full(30, 0.05)])
    chosen = moderation_thresholds(
        np.stack([hate, offensive], axis=1),
        classes,
        ["hate_speech", "offensive"],
        {"hate_speech": (0.8, 0.95), "offensive": (0.9, 0.99)},
        min_flagged=10,
    )
    assert chosen["hate_speech"]["flag"].threshold == pytest.approx(0.9)
    assert chosen["hate_speech"]["reject"].threshold == pytest.approx(0.9)
    # Hate rows count as offensive too: everything above the clean rows is a true positive.
    assert chosen["offensive"]["flag"].threshold == pytest.approx(0.9)
    assert chosen["offensive"]["flag"].recall == 1.0
    assert chosen["offensive"]["flag"].clean_hit_rate == 0.0
