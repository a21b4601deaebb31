"""Score any served model kind on a labelled file: AUC, accuracy, macro-F1, bootstrap 95% CIs.

    python -m pipelines.evaluate --kind profanity --data ../shared/data/toxicity/davidson_train.csv
    python -m pipelines.evaluate --kind head --path <checkpoint> --task sentiment \\
        --data ../shared/data/sentiment/*_GroundTruth.txt --split test --json

The model is built by `models.text_classifier.load_text_classifier`, the loader the serving
nodes use, so every kind a node can serve (profanity, vader, transformer, head, ...) is scored
exactly as it answers requests. Files are the formats of ``../shared/data``: a Davidson et al.
CSV (moderation) or a VADER ground-truth TSV (sentiment), detected from the extension and
the header, or named with ``--format``. Several files are read in order and concatenated,
as a job's ``data_paths``; ``--split test`` keeps only the held-out test rows of the split
the training jobs draw from them (seed and fractions as the job's; pass the job's files in
its order).

What is scored, per task (truth from the file, scores from the model's answer):

* moderation (Davidson class 0 hate, 1 offensive, 2 neither). The *toxic* score is the
  model's ``offensive`` (or ``toxic``) category, else its highest category; the *hate*
  score is its ``hate_speech`` (or ``identity_hate``) category, else the toxic score (a
  one-score model such as alt-profanity-check answers both with one number). AUCs:
  offensive-or-hate vs neither (toxic score), hate vs rest and hate vs offensive (hate
  score; the latter on non-neither rows). Accuracy and macro-F1 over the 3 classes of the
  prediction hate if hate >= threshold (models with a hate category only), else offensive
  if toxic >= threshold, else neither.
* sentiment (mean rating > 0.5 positive, < -0.5 negative, else neutral). The polarity score
  is VADER's compound, else P(positive) - P(negative). AUCs: positive vs negative (polar
  rows only, polarity) and one-vs-rest per label (positive: compound or P(positive);
  negative: -compound or P(negative); neutral: P(neutral), else 1 - |polarity|). Accuracy
  and macro-F1 of the model's label.

Every interval is a percentile bootstrap over rows (``--bootstrap`` resamples, seeded): the
2.5th and 97.5th percentiles of the metric over resamples of the same size, drawn with
replacement. No row text is ever printed or written: counts and metrics only.

Exit status 2, with a message naming the argument, for a missing file, an unknown format,
wrong columns, a task that does not match the file, an unknown kind or a missing --path.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from configs.pipelines import TextHeadJobConfig
from models.heads import DAVIDSON_HATE, DAVIDSON_NEITHER, DAVIDSON_OFFENSIVE, SENTIMENT_HEAD_LABELS
from models.sentiment import SentimentScores
from models.text_classifier import load_text_classifier, task_spec
from pipelines.data import (
    DAVIDSON_COLUMNS,
    DataValidationError,
    LabelledTexts,
    read_davidson_csv,
    read_vader_ground_truth,
    stratified_split,
)

__all__ = [
    "FORMATS",
    "EvaluationError",
    "Interval",
    "auc",
    "bootstrap",
    "class_metrics",
    "detect_format",
    "main",
    "moderation_report",
    "read_labelled_files",
    "sentiment_report",
]

# File format -> the task its labels are for.
FORMATS = {"davidson": "moderation", "vader": "sentiment"}
_DAVIDSON_SUFFIXES = (".csv",)
_VADER_SUFFIXES = (".txt", ".tsv")
# The split the training jobs draw (pipelines.text_heads): their config's defaults.
_JOB_FIELDS = TextHeadJobConfig.model_fields
DEFAULT_SPLIT_SEED = int(_JOB_FIELDS["seed"].default)
DEFAULT_VALIDATION_FRACTION = float(_JOB_FIELDS["validation_fraction"].default)
DEFAULT_TEST_FRACTION = float(_JOB_FIELDS["test_fraction"].default)
_TOXIC_LABELS = ("offensive", "toxic")
_HATE_LABELS = ("hate_speech", "identity_hate", "hate")
_MODERATION_CLASSES = ("hate_speech", "offensive", "neither")
_PREDICT_CHUNK = 256


class EvaluationError(ValueError):
    """Bad command-line input; `argument` names the flag to fix."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument


# --- metrics ------------------------------------------------------------------------------


def auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by ranks (ties averaged); NaN when `truth` holds one class only."""
    truth = np.asarray(truth, dtype=bool)
    positives = int(truth.sum())
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def class_metrics(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, and macro-F1 over the classes present in `truth` or `predicted` (as
    scikit-learn's f1_score with zero_division=0 over labels 0..n-1)."""
    truth = np.asarray(truth, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    confusion = np.bincount(truth * n_classes + predicted, minlength=n_classes * n_classes)
    confusion = confusion.reshape(n_classes, n_classes)
    true_positive = np.diag(confusion).astype(np.float64)
    predicted_count = confusion.sum(axis=0)
    actual_count = confusion.sum(axis=1)
    denominator = predicted_count + actual_count
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return {
        "accuracy": float(true_positive.sum() / max(len(truth), 1)),
        "macro_f1": float(f1.mean()),
    }


@dataclass(frozen=True)
class Interval:
    """A metric on every row and its percentile-bootstrap 95% interval."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        """JSON-ready (NaN as null)."""
        return {
            name: (None if math.isnan(number) else number)
            for name, number in (("value", self.value), ("low", self.low), ("high", self.high))
        }


MetricFn = Callable[[np.ndarray], dict[str, float]]


def bootstrap(metrics: MetricFn, rows: int, resamples: int, seed: int) -> dict[str, Interval]:
    """Each metric of ``metrics(indices)`` on all rows and its 95% percentile interval.

    `metrics` maps an index array (rows, with repeats) to named values. A resample where a
    metric is undefined (NaN: one class only) is left out of that metric's percentiles.
    ``resamples`` 0 gives the values with NaN bounds.
    """
    full = metrics(np.arange(rows))
    samples: dict[str, list[float]] = {name: [] for name in full}
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        drawn = metrics(rng.integers(0, rows, size=rows))
        for name, value in drawn.items():
            samples[name].append(value)
    result = {}
    for name, value in full.items():
        values = np.asarray(samples[name], dtype=np.float64)
        values = values[~np.isnan(values)]
        if len(values) == 0:
            result[name] = Interval(value, math.nan, math.nan)
        else:
            low, high = np.percentile(values, [2.5, 97.5])
            result[name] = Interval(value, float(low), float(high))
    return result


# --- what each task scores -----------------------------------------------------------------


@dataclass(frozen=True)
class TaskScores:
    """A model's answers turned into numbers, and how (for the report)."""

    metrics: MetricFn
    notes: dict[str, str]


def _pick(labels: Sequence[str], preferred: Sequence[str]) -> str | None:
    return next((label for label in preferred if label in labels), None)


def moderation_report(
    answers: Sequence[dict[str, float]], classes: np.ndarray, threshold: float
) -> TaskScores:
    """Metrics of moderation answers against Davidson classes (module docstring)."""
    labels = list(answers[0]) if answers else []
    toxic_label = _pick(labels, _TOXIC_LABELS)
    hate_label = _pick(labels, _HATE_LABELS)
    matrix = np.array([[row[label] for label in labels] for row in answers], dtype=np.float64)
    toxic = matrix[:, labels.index(toxic_label)] if toxic_label else matrix.max(axis=1)
    hate = matrix[:, labels.index(hate_label)] if hate_label else toxic
    predicted = np.where(toxic >= threshold, DAVIDSON_OFFENSIVE, DAVIDSON_NEITHER)
    if hate_label is not None:
        predicted = np.where(hate >= threshold, DAVIDSON_HATE, predicted)

    def metrics(rows: np.ndarray) -> dict[str, float]:
        truth = classes[rows]
        is_hate = truth == DAVIDSON_HATE
        toxic_rows = truth != DAVIDSON_NEITHER
        return {
            "auc_offensive_or_hate_vs_neither": auc(toxic_rows, toxic[rows]),
            "auc_hate_vs_rest": auc(is_hate, hate[rows]),
            "auc_hate_vs_offensive": auc(is_hate[toxic_rows], hate[rows][toxic_rows]),
            **class_metrics(truth, predicted[rows], 3),
        }

    notes = {
        "toxic_score": toxic_label or f"max over {labels}",
        "hate_score": hate_label or f"{toxic_label or 'max'} (the model has no hate category)",
        "classes": f"0 {_MODERATION_CLASSES[0]}, 1 {_MODERATION_CLASSES[1]}, 2 neither",
        "prediction": f"threshold {threshold}"
        + ("" if hate_label else "; never predicts hate speech (no hate category)"),
    }
    return TaskScores(metrics, notes)


def sentiment_report(answers: Sequence[SentimentScores], classes: np.ndarray) -> TaskScores:
    """Metrics of sentiment answers against VADER ground-truth classes (module docstring)."""
    positive = np.array([a.scores.positive for a in answers], dtype=np.float64)
    negative = np.array([a.scores.negative for a in answers], dtype=np.float64)
    compound = [a.compound for a in answers]
    has_compound = bool(answers) and all(value is not None for value in compound)
    polarity = np.array(compound, dtype=np.float64) if has_compound else positive - negative
    neutral_given = bool(answers) and all(a.scores.neutral is not None for a in answers)
    neutral = (
        np.array([a.scores.neutral for a in answers], dtype=np.float64)
        if neutral_given
        else 1.0 - np.abs(polarity)
    )
    one_vs_rest = {
        "positive": polarity if has_compound else positive,
        "negative": -polarity if has_compound else negative,
        "neutral": neutral,
    }
    predicted = np.array([SENTIMENT_HEAD_LABELS.index(a.label) for a in answers], dtype=np.int64)
    positive_class = SENTIMENT_HEAD_LABELS.index("positive")
    negative_class = SENTIMENT_HEAD_LABELS.index("negative")

    def metrics(rows: np.ndarray) -> dict[str, float]:
        truth = classes[rows]
        polar = (truth == positive_class) | (truth == negative_class)
        values = {
            "auc_positive_vs_negative": auc(truth[polar] == positive_class, polarity[rows][polar]),
        }
        for index, name in enumerate(SENTIMENT_HEAD_LABELS):
            values[f"auc_{name}_vs_rest"] = auc(truth == index, one_vs_rest[name][rows])
        values.update(class_metrics(truth, predicted[rows], len(SENTIMENT_HEAD_LABELS)))
        return values

    notes = {
        "polarity_score": "compound" if has_compound else "P(positive) - P(negative)",
        "one_vs_rest_scores": (
            "compound, -compound, P(neutral)"
            if has_compound
            else "P(positive), P(negative), "
            + ("P(neutral)" if neutral_given else "1 - |polarity| (no neutral output)")
        ),
        "classes": "mean rating > 0.5 positive, < -0.5 negative, else neutral",
        "prediction": "the model's label",
    }
    return TaskScores(metrics, notes)


# --- input files ---------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """``"davidson"`` or ``"vader"`` from the extension and the first line.

    Raises:
        EvaluationError: (--data) missing, not a file, or neither format.
    """
    if not path.exists():
        raise EvaluationError("--data", f"file {str(path)!r} does not exist")
    if not path.is_file():
        raise EvaluationError("--data", f"{str(path)!r} is not a file")
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            first = handle.readline().rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise EvaluationError("--data", f"file {str(path)!r} is not UTF-8 text") from exc
    header = [column.strip() for column in first.split(",")]
    if path.suffix.lower() in _DAVIDSON_SUFFIXES or {"class", "tweet"} <= set(header):
        return "davidson"
    fields = first.split("\t")
    if path.suffix.lower() in _VADER_SUFFIXES or len(fields) == 3:
        return "vader"
    raise EvaluationError(
        "--format",
        f"cannot tell the format of {str(path)!r} from its extension or first line; pass "
        f"--format {' or --format '.join(FORMATS)} (a Davidson CSV with columns "
        f"{list(DAVIDSON_COLUMNS)}, or a VADER TSV: id, mean rating, text)",
    )


def read_labelled_files(
    paths: Sequence[Path], file_format: str | None
) -> tuple[str, LabelledTexts]:
    """Read, check and concatenate `paths` (one format); returns the format and the rows.

    Raises:
        EvaluationError: (--data / --format) a file is missing, unreadable, malformed, or
            the files mix formats. Messages never quote a row.
    """
    if file_format is not None and file_format not in FORMATS:
        raise EvaluationError(
            "--format", f"unknown format {file_format!r}; accepted: {', '.join(FORMATS)}"
        )
    formats = {file_format or detect_format(path) for path in paths}
    if len(formats) != 1:
        raise EvaluationError(
            "--data", f"the files mix formats {sorted(formats)}; score one task's files at a time"
        )
    chosen = formats.pop()
    parts = []
    for path in paths:
        if not path.is_file():
            raise EvaluationError("--data", f"file {str(path)!r} does not exist")
        try:
            parts.append(
                read_davidson_csv(path, soft_targets=False)
                if chosen == "davidson"
                else read_vader_ground_truth(path)
            )
        except DataValidationError as exc:
            raise EvaluationError("--data", f"{exc} (read as --format {chosen})") from exc
    data = LabelledTexts(
        [text for part in parts for text in part.texts],
        np.concatenate([part.targets for part in parts]),
        np.concatenate([part.classes for part in parts]),
        parts[0].labels,
    )
    return chosen, data


# --- the command ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.evaluate",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--kind", required=True, help="model kind, as a node's `kind`")
    parser.add_argument(
        "--task", choices=sorted(set(FORMATS.values())), help="default: from the file format"
    )
    parser.add_argument("--data", required=True, nargs="+", type=Path, help="labelled file(s)")
    parser.add_argument("--format", choices=sorted(FORMATS), help="default: detected")
    parser.add_argument("--path", help="checkpoint directory (kinds transformer, head)")
    parser.add_argument("--device", default="cpu", help="device of checkpoint kinds")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a load option of the kind, as a node's config sets it (e.g. max_length=256, "
        "stride=32, backend=onnx); repeatable",
    )
    parser.add_argument(
        "--split",
        choices=("all", "test", "validation"),
        default="all",
        help="all rows, or the training jobs' held-out test (or validation) rows",
    )
    parser.add_argument("--split-seed", type=int, default=DEFAULT_SPLIT_SEED)
    parser.add_argument("--validation-fraction", type=float, default=DEFAULT_VALIDATION_FRACTION)
    parser.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION)
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="moderation: class decision threshold"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _check_numbers(args: argparse.Namespace) -> None:
    if args.bootstrap < 0:
        raise EvaluationError("--bootstrap", f"{args.bootstrap} must be 0 or more")
    if not 0.0 <= args.threshold <= 1.0:
        raise EvaluationError("--threshold", f"{args.threshold} must be within [0, 1]")
    for flag, value in (
        ("--validation-fraction", args.validation_fraction),
        ("--test-fraction", args.test_fraction),
    ):
        if not 0.0 < value < 0.5:
            raise EvaluationError(flag, f"{value} must be within (0, 0.5), as the jobs'")


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs as load options; numbers become int or float."""
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise EvaluationError("--option", f"{pair!r} is not NAME=VALUE, e.g. stride=32")
        value: Any = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        options[name.strip()] = value
    return options


def _predict(model: Any, texts: list[str], quiet: bool) -> list[Any]:
    answers: list[Any] = []
    started_s = time.monotonic()
    for start in range(0, len(texts), _PREDICT_CHUNK):
        answers.extend(model.predict_batch(texts[start : start + _PREDICT_CHUNK]))
        if not quiet and len(texts) > _PREDICT_CHUNK * 8 and start % (_PREDICT_CHUNK * 8) == 0:
            print(f"scored {len(answers)}/{len(texts)} rows", file=sys.stderr, flush=True)
    if not quiet:
        elapsed_s = time.monotonic() - started_s
        print(f"scored {len(texts)} rows in {elapsed_s:.1f} s", file=sys.stderr, flush=True)
    return answers


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run one evaluation from parsed arguments; the result as JSON-ready fields.

    Raises:
        EvaluationError: Bad input; names the argument.
    """
    _check_numbers(args)
    file_format, data = read_labelled_files(list(args.data), args.format)
    task = args.task or FORMATS[file_format]
    if FORMATS[file_format] != task:
        raise EvaluationError(
            "--task",
            f"{task} does not match the {file_format} file(s), which label "
            f"{FORMATS[file_format]}; pass --task {FORMATS[file_format]}",
        )
    kinds = list(task_spec(task).kinds)
    if args.kind.strip().lower() not in kinds:
        raise EvaluationError(
            "--kind", f"unknown {task} model kind {args.kind!r}; accepted: {', '.join(kinds)}"
        )
    if args.split == "all":
        rows = np.arange(len(data))
    else:
        split = stratified_split(
            data.classes, args.validation_fraction, args.test_fraction, args.split_seed
        )
        rows = split.test if args.split == "test" else split.validation
    options = _options(args.option)
    try:
        model = load_text_classifier(task, args.kind, args.path, args.device, **options)
    except TypeError as exc:  # an option the kind's load does not take
        raise EvaluationError("--option", str(exc)) from exc
    except (ValueError, OSError) as exc:
        argument = "--path" if "checkpoint" in str(exc) or args.path else "--kind"
        raise EvaluationError(argument, str(exc)) from exc
    texts = [data.texts[i] for i in rows]
    classes = data.classes[rows]
    answers = _predict(model, texts, args.json)
    scores = (
        moderation_report(answers, classes, args.threshold)
        if task == "moderation"
        else sentiment_report(answers, classes)
    )
    intervals = bootstrap(scores.metrics, len(rows), args.bootstrap, args.seed)
    class_names = _MODERATION_CLASSES if task == "moderation" else SENTIMENT_HEAD_LABELS
    counts = np.bincount(classes, minlength=len(class_names))
    return {
        "task": task,
        "kind": args.kind,
        "model": {"name": model.info.name, "version": model.info.version},
        "data": [path.name for path in args.data],
        "format": file_format,
        "split": args.split,
        "split_seed": args.split_seed if args.split != "all" else None,
        "rows": len(rows),
        "class_counts": {name: int(count) for name, count in zip(class_names, counts, strict=True)},
        "bootstrap": {"resamples": args.bootstrap, "seed": args.seed, "interval": "95% percentile"},
        "metrics": {name: interval.as_dict() for name, interval in intervals.items()},
        "notes": scores.notes,
    }


def _fmt(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:.4f}"


def render_text(result: dict[str, Any]) -> str:
    """The result as a short plain-text table (counts and metrics only)."""
    counts = ", ".join(f"{name} {count:,}" for name, count in result["class_counts"].items())
    model = result["model"]
    lines = [
        f"{result['task']} · {model['name']} {model['version']} (kind {result['kind']}) · "
        f"{', '.join(result['data'])} · split {result['split']}: {result['rows']:,} rows "
        f"({counts})",
        f"{'metric':34s} {'value':>7s}  95% CI ({result['bootstrap']['resamples']} bootstrap "
        f"resamples, seed {result['bootstrap']['seed']})",
    ]
    for name, interval in result["metrics"].items():
        bounds = (
            f"[{_fmt(interval['low'])}, {_fmt(interval['high'])}]"
            if interval["low"] is not None
            else "-"
        )
        lines.append(f"{name:34s} {_fmt(interval['value']):>7s}  {bounds}")
    lines += [f"  {name}: {note}" for name, note in result["notes"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI; exit status 0, or 2 with ``error: <argument>: <message>`` on bad input."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result = evaluate(args)
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
