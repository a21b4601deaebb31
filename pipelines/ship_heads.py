"""Ship a trained head inside the package, and choose the moderation policy's thresholds.

    # after `python -m pipelines.text_heads --config configs/pipelines/<task>_head.yaml`:
    python -m pipelines.ship_heads --task moderation --head <state_dir>/ray_results/<run>/best_head
    python -m pipelines.ship_heads --task sentiment  --head <state_dir>/ray_results/<run>/best_head
    # after editing a MODEL_CARD.md by hand: re-write the checksums only
    python -m pipelines.ship_heads --task moderation --manifest-only

Steps: copy the checkpoint's files (``head_config.json``, ``head.pt``, ``metrics.json``) into
``models/shipped/<task>-head/``; for moderation, score the job config's **validation** split
(the same seeded split the job trained with; embeddings from the job's cache) and pick per
category the lowest flag and reject thresholds whose precision reaches the targets
(`choose_threshold`), then score the held-out **test** split at those thresholds as a check
that took no part in the choice; for sentiment, score positive vs negative on the test split
against VADER; write ``figures.json`` (figures only, never text) and the ``MANIFEST`` of
checksums `models.shipped.load_shipped_head` verifies. The model card (``MODEL_CARD.md``)
is written by hand from these figures and the job's report.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from configs.pipelines import load_job_config
from models.heads import (
    DAVIDSON_HATE,
    DAVIDSON_NEITHER,
    HEAD_CONFIG_FILENAME,
    HEAD_METRICS_FILENAME,
    HEAD_WEIGHTS_FILENAME,
    load_head,
)
from models.shipped import MANIFEST_FILENAME, shipped_head_dir, write_manifest
from pipelines.jobs import say

__all__ = [
    "DEFAULT_TARGETS",
    "FIGURES_FILENAME",
    "Threshold",
    "choose_threshold",
    "main",
    "moderation_thresholds",
    "ship_head",
]

FIGURES_FILENAME = "figures.json"
# Precision targets per category: (flag, reject). `offensive` is 83% of Davidson's rows, so
# a target at or below that is met by flagging every post; its targets sit well above it.
# `hate_speech` (6% of rows) peaks near 0.7 precision on the validation split: flagging asks
# that most flagged posts be hate; rejecting on hate alone needs 0.95, which it does not reach.
DEFAULT_TARGETS: dict[str, tuple[float, float]] = {
    "hate_speech": (0.60, 0.95),
    "offensive": (0.95, 0.99),
}
# A threshold must flag at least this many validation rows: precision over fewer is noise.
DEFAULT_MIN_FLAGGED = 20
# Thresholds are rounded UP to this many decimals (a config value a person can read).
_DECIMALS = 3
# No threshold reaches the target: the category never triggers this action (1.0 is the
# policy's highest value; a sigmoid reaches it only in float rounding).
DISABLED = 1.0


@dataclass(frozen=True)
class Threshold:
    """One chosen threshold and what it does on the rows it was chosen on.

    Attributes:
        threshold: Score at or above which the action applies (`DISABLED`: never).
        target_precision: The precision asked for.
        precision: Precision of ``score >= threshold`` (NaN when nothing is flagged).
        recall: Share of the category's positives at or above it.
        flagged: Rows at or above it.
        clean_hit_rate: Share of rows with no offence at all (Davidson "neither") at or
            above it: what the action costs clean posts, whatever the class mix.
        reached: Whether any threshold met the target on at least `min_flagged` rows.
    """

    threshold: float
    target_precision: float
    precision: float
    recall: float
    flagged: int
    clean_hit_rate: float
    reached: bool


def _at(
    scores: np.ndarray, positive: np.ndarray, clean: np.ndarray, threshold: float
) -> dict[str, Any]:
    hit = scores >= threshold
    flagged = int(hit.sum())
    return {
        "precision": float(positive[hit].mean()) if flagged else float("nan"),
        "recall": float(hit[positive].mean()) if positive.any() else float("nan"),
        "flagged": flagged,
        "clean_hit_rate": float(hit[clean].mean()) if clean.any() else float("nan"),
    }


def choose_threshold(
    scores: np.ndarray,
    positive: np.ndarray,
    clean: np.ndarray,
    target_precision: float,
    min_flagged: int = DEFAULT_MIN_FLAGGED,
) -> Threshold:
    """The lowest threshold whose precision stays at or above `target_precision`.

    Walking down from the highest score, every cut that flags at least `min_flagged` rows
    must keep the target: the walk stops at the first that does not, so one lucky dip in the
    curve below a failing stretch is never picked. The result is rounded up to 3 decimals
    and its figures recomputed there. No cut reaches the target: `DISABLED`.

    Args:
        scores: The category's score per row.
        positive: True where the row belongs to the category.
        clean: True where the row has no offence at all (for `Threshold.clean_hit_rate`).
        target_precision: Precision the action must keep, in (0, 1].
        min_flagged: Fewest flagged rows a cut needs to count.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    clean = np.asarray(clean, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_positive = scores[order], positive[order]
    true_positives = np.cumsum(sorted_positive)
    flagged = np.arange(1, len(scores) + 1)
    # Only the last row of a run of tied scores is a real cut (score >= that value).
    last_of_tie = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    best: float | None = None
    for i in np.flatnonzero(last_of_tie):
        if flagged[i] < min_flagged:
            continue
        if true_positives[i] / flagged[i] < target_precision:
            break
        best = float(sorted_scores[i])
    if best is None:
        return Threshold(
            DISABLED, target_precision, **_at(scores, positive, clean, DISABLED), reached=False
        )
    scale = 10**_DECIMALS
    rounded = min(float(np.ceil(best * scale - 1e-9) / scale), DISABLED)
    return Threshold(
        rounded, target_precision, **_at(scores, positive, clean, rounded), reached=True
    )


def moderation_thresholds(
    probabilities: np.ndarray,
    classes: np.ndarray,
    labels: Sequence[str],
    targets: dict[str, tuple[float, float]],
    min_flagged: int = DEFAULT_MIN_FLAGGED,
) -> dict[str, dict[str, Threshold]]:
    """``{category: {"flag": Threshold, "reject": Threshold}}`` for a moderation head.

    Davidson classes: hate speech rows are positives of ``hate_speech``; hate speech and
    offensive rows are positives of ``offensive`` (its label means "offensive or worse").
    """
    classes = np.asarray(classes)
    clean = classes == DAVIDSON_NEITHER
    truth = {"hate_speech": classes == DAVIDSON_HATE, "offensive": ~clean}
    chosen: dict[str, dict[str, Threshold]] = {}
    for column, label in enumerate(labels):
        if label not in targets:
            continue
        flag_target, reject_target = targets[label]
        scores = probabilities[:, column]
        chosen[label] = {
            action: choose_threshold(scores, truth[label], clean, target, min_flagged)
            for action, target in (("flag", flag_target), ("reject", reject_target))
        }
    return chosen


def _check_at(
    probabilities: np.ndarray,
    classes: np.ndarray,
    labels: Sequence[str],
    chosen: dict[str, dict[str, Threshold]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """The chosen thresholds' figures on other rows (the held-out test split)."""
    classes = np.asarray(classes)
    clean = classes == DAVIDSON_NEITHER
    truth = {"hate_speech": classes == DAVIDSON_HATE, "offensive": ~clean}
    return {
        label: {
            action: _at(probabilities[:, labels.index(label)], truth[label], clean, t.threshold)
            for action, t in actions.items()
        }
        for label, actions in chosen.items()
    }


def _copy_head(source: Path, target: Path) -> None:
    load_head(source)  # refuse anything that is not a loadable head before copying
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.iterdir():
        if stale.is_file() and stale.name not in ("MODEL_CARD.md",):
            stale.unlink()
    for name in (HEAD_CONFIG_FILENAME, HEAD_WEIGHTS_FILENAME, HEAD_METRICS_FILENAME):
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)


def ship_head(
    task: str,
    head: Path | None,
    config_path: Path,
    targets: dict[str, tuple[float, float]],
    min_flagged: int,
    target_dir: Path | None = None,
) -> dict[str, Any]:
    """Copy `head` into the package (unless None), choose thresholds, write the MANIFEST."""
    target = target_dir or shipped_head_dir(task)
    result: dict[str, Any] = {"task": task, "directory": str(target)}
    if head is not None:
        _copy_head(head, target)
        say(f"copied {head} -> {target}")
        if task == "moderation":
            figures = {"thresholds": _choose_and_check(target, config_path, targets, min_flagged)}
        else:
            figures = {"positive_vs_negative": _polarity_check(target, config_path)}
        (target / FIGURES_FILENAME).write_text(
            json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        result.update(figures)
    manifest = write_manifest(target)
    say(f"wrote {manifest} ({len(manifest.read_text(encoding='utf-8').splitlines())} files)")
    return result


def _choose_and_check(
    head_dir: Path,
    config_path: Path,
    targets: dict[str, tuple[float, float]],
    min_flagged: int,
) -> dict[str, Any]:
    # Imported here: the training module pulls in Ray and MLflow, which choosing needs not.
    from pipelines.text_heads import prepare_data

    config = load_job_config(config_path)
    prepared = prepare_data(config)
    loaded = load_head(head_dir)
    labels = list(loaded.config.labels)
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in ("validation", "test"):
        rows = getattr(prepared.split, name)
        texts = [prepared.data.texts[i] for i in rows]
        parts[name] = (
            loaded.probabilities(texts, prepared.embeddings[rows]),
            prepared.data.classes[rows],
        )
    chosen = moderation_thresholds(*parts["validation"], labels, targets, min_flagged)
    checked = _check_at(*parts["test"], labels, chosen)
    for label, actions in chosen.items():
        for action, t in actions.items():
            test = checked[label][action]
            say(
                f"{label:12s} {action:6s} >= {t.threshold:.3f} (target precision "
                f"{t.target_precision:.2f}{'' if t.reached else ', NOT reached: disabled'}): "
                f"validation precision {t.precision:.3f} recall {t.recall:.3f} flagged "
                f"{t.flagged} clean hit {t.clean_hit_rate:.4f} | test precision "
                f"{test['precision']:.3f} recall {test['recall']:.3f} flagged {test['flagged']} "
                f"clean hit {test['clean_hit_rate']:.4f}"
            )
    return {
        "chosen_on": "validation",
        "rows": {name: len(part[1]) for name, part in parts.items()},
        "min_flagged": min_flagged,
        "validation": {
            label: {action: asdict(t) for action, t in actions.items()}
            for label, actions in chosen.items()
        },
        "test": checked,
    }


def _polarity_check(head_dir: Path, config_path: Path) -> dict[str, Any]:
    """Positive vs negative ROC AUC on the held-out test split (neutral rows left out): the
    head's p(positive) - p(negative) against VADER's compound score."""
    from sklearn.metrics import roc_auc_score

    from models.heads import SENTIMENT_HEAD_LABELS
    from models.sentiment import VaderSentiment
    from pipelines.text_heads import prepare_data

    prepared = prepare_data(load_job_config(config_path))
    rows = prepared.split.test
    texts = [prepared.data.texts[i] for i in rows]
    classes = prepared.data.classes[rows]
    positive, negative = (SENTIMENT_HEAD_LABELS.index(n) for n in ("positive", "negative"))
    polar = np.isin(classes, (positive, negative))
    truth = classes[polar] == positive
    loaded = load_head(head_dir)
    columns = [loaded.config.labels.index(name) for name in ("positive", "negative")]
    probabilities = loaded.probabilities(texts, prepared.embeddings[rows])
    head_score = probabilities[:, columns[0]] - probabilities[:, columns[1]]
    vader = np.array([r.compound or 0.0 for r in VaderSentiment.load().predict_batch(texts)])
    figures = {
        "split": "test",
        "rows": int(polar.sum()),
        "positive_rows": int(truth.sum()),
        "auc_head": float(roc_auc_score(truth, head_score[polar])),
        "auc_vader_compound": float(roc_auc_score(truth, vader[polar])),
    }
    say(
        f"positive vs negative on {figures['rows']} test rows: head AUC "
        f"{figures['auc_head']:.4f}, VADER compound {figures['auc_vader_compound']:.4f}"
    )
    return figures


def _targets(values: Sequence[str]) -> dict[str, tuple[float, float]]:
    targets = dict(DEFAULT_TARGETS)
    for value in values:
        label, _, pair = value.partition("=")
        flag, _, reject = pair.partition(",")
        try:
            targets[label] = (float(flag), float(reject))
        except ValueError as exc:
            raise ValueError(
                f"--target {value!r}: use <category>=<flag precision>,<reject precision>, "
                "e.g. hate_speech=0.8,0.95"
            ) from exc
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("moderation", "sentiment"), required=True)
    parser.add_argument("--head", type=Path, help="best_head directory of a text_heads run")
    parser.add_argument(
        "--config", type=Path, help="the job config it was trained with (default per task)"
    )
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        help="category=flag,reject precision targets (default "
        + "; ".join(f"{k}={v[0]},{v[1]}" for k, v in DEFAULT_TARGETS.items())
        + ")",
    )
    parser.add_argument("--min-flagged", type=int, default=DEFAULT_MIN_FLAGGED)
    parser.add_argument(
        "--manifest-only", action="store_true", help=f"only re-write {MANIFEST_FILENAME}"
    )
    args = parser.parse_args(argv)
    if args.head is None and not args.manifest_only:
        parser.error("--head is required (or --manifest-only)")
    config_path = args.config or Path(f"configs/pipelines/{args.task}_head.yaml")

    try:
        result = ship_head(
            args.task,
            None if args.manifest_only else args.head,
            config_path,
            _targets(args.target),
            args.min_flagged,
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
