"""Metrics of the text heads, and the embedded defaults scored on the same held-out rows.

Moderation scores are ``(n, 2)`` in head label order (hate_speech, offensive); the hard truth
is the Davidson class (0 hate, 1 offensive, 2 neither). Sentiment scores are ``(n, 3)`` in
SENTIMENT_HEAD_LABELS order; the truth is an index into it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from models.heads import DAVIDSON_HATE, DAVIDSON_NEITHER, SENTIMENT_HEAD_LABELS
from models.moderation import ProfanityModerator
from models.sentiment import VaderSentiment

__all__ = [
    "auc",
    "baseline_report",
    "moderation_metrics",
    "render_report_markdown",
    "sentiment_metrics",
    "task_metrics",
]

# Decision threshold of a moderation label for F1 (the policy's default flag threshold).
_MODERATION_THRESHOLD = 0.5


def auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN when `truth` has only one class (AUC is undefined there)."""
    truth = np.asarray(truth).astype(bool)
    if truth.all() or not truth.any():
        return math.nan
    return float(roc_auc_score(truth, scores))


def _mean(values: list[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    # 0.5 is a coin flip: an undefined AUC must never look like a win.
    return float(np.mean(finite)) if finite else 0.5


def moderation_metrics(probabilities: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """AUC and F1 per label, their macro means, and the hate-vs-offensive AUC."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    hate_truth = classes == DAVIDSON_HATE
    offensive_truth = classes != DAVIDSON_NEITHER
    toxic = classes != DAVIDSON_NEITHER
    metrics = {
        "auc_hate_speech": auc(hate_truth, probabilities[:, 0]),
        "auc_offensive": auc(offensive_truth, probabilities[:, 1]),
        "f1_hate_speech": float(
            f1_score(hate_truth, probabilities[:, 0] >= _MODERATION_THRESHOLD, zero_division=0)
        ),
        "f1_offensive": float(
            f1_score(offensive_truth, probabilities[:, 1] >= _MODERATION_THRESHOLD, zero_division=0)
        ),
        # Among rows that are hate or offensive: does the hate score rank hate above profanity?
        "auc_hate_vs_offensive": auc(hate_truth[toxic], probabilities[toxic, 0]),
    }
    metrics["macro_auc"] = _mean([metrics["auc_hate_speech"], metrics["auc_offensive"]])
    metrics["macro_f1"] = float(np.mean([metrics["f1_hate_speech"], metrics["f1_offensive"]]))
    return metrics


def sentiment_metrics(probabilities: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of the top label, and one-vs-rest AUC per label."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    labels = list(range(len(SENTIMENT_HEAD_LABELS)))
    metrics = {
        "accuracy": float(accuracy_score(classes, predicted)),
        "macro_f1": float(
            f1_score(classes, predicted, labels=labels, average="macro", zero_division=0)
        ),
    }
    aucs = []
    for index, name in enumerate(SENTIMENT_HEAD_LABELS):
        metrics[f"auc_{name}"] = auc(classes == index, probabilities[:, index])
        aucs.append(metrics[f"auc_{name}"])
    metrics["macro_auc"] = _mean(aucs)
    return metrics


def task_metrics(task: str, probabilities: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """`moderation_metrics` or `sentiment_metrics` by task."""
    if task == "moderation":
        return moderation_metrics(probabilities, classes)
    return sentiment_metrics(probabilities, classes)


def baseline_report(task: str, texts: list[str], classes: np.ndarray) -> dict[str, Any]:
    """Score the embedded default on `texts`: alt-profanity-check or VADER.

    alt-profanity-check has one score, so it is used both for "offensive or hate vs neither"
    and for "hate vs offensive". VADER's label comes from its compound cut-offs (+-0.05).
    """
    if task == "moderation":
        profanity = ProfanityModerator.load()
        scores = np.array([row["offensive"] for row in profanity.predict_batch(texts)])
        toxic = classes != DAVIDSON_NEITHER
        return {
            "model": f"{profanity.info.name} {profanity.info.version}",
            "auc_toxic_vs_neither": auc(toxic, scores),
            "auc_hate_vs_offensive": auc(classes[toxic] == DAVIDSON_HATE, scores[toxic]),
        }
    vader = VaderSentiment.load()
    predicted = np.array(
        [SENTIMENT_HEAD_LABELS.index(row.label) for row in vader.predict_batch(texts)]
    )
    labels = list(range(len(SENTIMENT_HEAD_LABELS)))
    return {
        "model": f"{vader.info.name} {vader.info.version}",
        "accuracy": float(accuracy_score(classes, predicted)),
        "macro_f1": float(
            f1_score(classes, predicted, labels=labels, average="macro", zero_division=0)
        ),
    }


def head_comparison(task: str, metrics: dict[str, float]) -> dict[str, float]:
    """The head's numbers under the baseline's metric names (one table row each)."""
    if task == "moderation":
        return {
            "auc_toxic_vs_neither": metrics["auc_offensive"],
            "auc_hate_vs_offensive": metrics["auc_hate_vs_offensive"],
        }
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def render_report_markdown(report: dict[str, Any]) -> str:
    """A short Markdown table of the held-out comparison (no text from the data)."""
    task = report["task"]
    rows = report["rows"]
    lines = [
        f"# Evaluation report: {task} head",
        "",
        f"Held-out test split: {rows['test']} rows (train {rows['train']}, "
        f"validation {rows['validation']}), seed {report['seed']}.",
        "",
    ]
    columns = list(report["head_vs_baseline"]["head"])
    lines.append("| model | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    for key in ("head", "baseline"):
        entry = report["head_vs_baseline"].get(key)
        if not entry:
            continue
        name = report["head_name"] if key == "head" else entry.get("model", "baseline")
        cells = [f"{float(entry[column]):.3f}" for column in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "All test metrics of the head:", ""]
    for name, value in sorted(report["test_metrics"].items()):
        lines.append(f"- {name}: {value:.4f}")
    return "\n".join(lines) + "\n"
