"""One text classifier, configured by task: the loader registry of moderation and sentiment.

As transformers' ``TextClassificationPipeline`` serves every text head and picks sigmoid or
softmax by setting, a text task here is a row of `SUPPORTED_TASKS`, not a copy of code:

=============  =====================  ==================================================
task           result per text        kinds (model class)
=============  =====================  ==================================================
moderation     ``ModerationScores``   profanity (`ProfanityModerator`, embedded default),
                                      transformer (`TransformerModerator`, sigmoid, max
                                      over windows), head (`HeadModerator`)
sentiment      ``SentimentScores``    vader (`VaderSentiment`, embedded default),
                                      transformer (`TransformerSentiment`, softmax, mean
                                      over windows), head (`HeadSentiment`)
=============  =====================  ==================================================

`load_text_classifier` builds the model a config names; `load_embedded_default` builds the
task's embedded model, which also answers when a node cannot (the ingress fallback). Adding a
task is a row here, its result type and its model classes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar

from models.answers import BatchModel
from models.heads import HeadClassifier, HeadModerator, HeadSentiment
from models.moderation import ModerationScores, ProfanityModerator, TransformerModerator
from models.sentiment import SentimentScores, TransformerSentiment, VaderSentiment
from models.text_windows import WindowedSequenceClassifier

__all__ = [
    "SUPPORTED_TASKS",
    "TaskSpec",
    "TextClassification",
    "TextClassifierModel",
    "TextTask",
    "load_embedded_default",
    "load_text_classifier",
    "task_spec",
]

TextTask = Literal["moderation", "sentiment"]
# What a text classifier answers per text, whichever the task.
TextClassification: TypeAlias = ModerationScores | SentimentScores

ResultT = TypeVar("ResultT")
# A text classifier of any task: its identity and one result per text.
TextClassifierModel: TypeAlias = BatchModel[str, ResultT]


@dataclass(frozen=True)
class ModelKind:
    """How one kind of model loads.

    Attributes:
        load: The model class's ``load``.
        checkpoint: What `path` must name; None for an embedded model (no checkpoint, so
            `path`, `device` and options do not apply).
    """

    load: Callable[..., TextClassifierModel[Any]]
    checkpoint: str | None = None


_HEAD_CHECKPOINT = (
    "a directory written by models.heads.save_head (pipelines/text_heads.py writes one)"
)


@dataclass(frozen=True)
class TaskSpec:
    """One row of `SUPPORTED_TASKS`: a text task's result type and model classes.

    Attributes:
        result_type: What the models answer per text (the result cache reads it back as).
        default_kind: The embedded model's kind: the configs' default, the ingress fallback.
        embedded: Loads the embedded model (no checkpoint).
        transformer: The windowed checkpoint classifier (kind ``"transformer"``; the ONNX
            export gates its artifacts against it).
        head: The MiniLM head classifier (kind ``"head"``).
    """

    result_type: Any
    default_kind: str
    embedded: Callable[[], TextClassifierModel[Any]]
    transformer: type[WindowedSequenceClassifier[Any]]
    head: type[HeadClassifier[Any]]

    @property
    def kinds(self) -> dict[str, ModelKind]:
        """Model kind name -> how it loads, in the order error messages list them."""
        checkpoint = (
            "a local directory written by save_pretrained "
            f"(e.g. {self.transformer.checkpoint_example})"
        )
        return {
            self.default_kind: ModelKind(self.embedded),
            "transformer": ModelKind(self.transformer.load, checkpoint),
            "head": ModelKind(self.head.load, _HEAD_CHECKPOINT),
        }


SUPPORTED_TASKS: Mapping[str, TaskSpec] = {
    "moderation": TaskSpec(
        ModerationScores, "profanity", ProfanityModerator.load, TransformerModerator, HeadModerator
    ),
    "sentiment": TaskSpec(
        SentimentScores, "vader", VaderSentiment.load, TransformerSentiment, HeadSentiment
    ),
}


def task_spec(task: str) -> TaskSpec:
    """The `SUPPORTED_TASKS` row of `task`.

    Raises:
        ValueError: Unknown task (the message lists the supported ones).
    """
    spec = SUPPORTED_TASKS.get(task)
    if spec is None:
        raise ValueError(
            f"unknown text task {task!r}; supported tasks: {', '.join(SUPPORTED_TASKS)}"
        )
    return spec


def load_text_classifier(
    task: str,
    kind: str,
    path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    **options: Any,
) -> TextClassifierModel[Any]:
    """Build the model of `kind` for `task`.

    Args:
        task: ``"moderation"`` or ``"sentiment"`` (`SUPPORTED_TASKS`).
        kind: One of the task's kinds, e.g. ``"profanity"``, ``"transformer"``, ``"head"``.
        path: Checkpoint directory; required for ``"transformer"`` (torch backend) and
            ``"head"``, ignored by the embedded kinds.
        device: Device of checkpoint models; the embedded ones run on CPU.
        **options: The model class's ``load`` options (transformer: max_length, stride,
            max_windows_per_forward, name, backend, onnx_path, onnx_threads and, for
            sentiment, neutral_threshold; head: name, version, embedder). The embedded
            kinds take none and ignore them, so one config shape serves every kind.

    Raises:
        ValueError: Unknown task or kind, or a checkpoint kind without `path`.
    """
    spec = task_spec(task)
    normalised = kind.strip().lower()
    model_kind = spec.kinds.get(normalised)
    if model_kind is None:
        raise ValueError(
            f"unknown {task} model kind {kind!r}; accepted kinds: {', '.join(spec.kinds)}"
        )
    if model_kind.checkpoint is None:
        return model_kind.load()
    # A transformer served from its ONNX artifact reads `onnx_path` instead.
    if options.get("backend", "torch") != "onnx" and (path is None or not str(path)):
        raise ValueError(
            f'{task} kind "{normalised}" needs a checkpoint: set the path to '
            f"{model_kind.checkpoint}"
        )
    return model_kind.load(path, device, **options)


def load_embedded_default(task: str) -> TextClassifierModel[Any]:
    """The task's embedded model (alt-profanity-check, VADER): no checkpoint, CPU."""
    return load_text_classifier(task, task_spec(task).default_kind)
