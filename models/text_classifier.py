"""One text classifier, configured by task: the loader registry of moderation and sentiment.

As transformers' ``TextClassificationPipeline`` serves every text head and picks sigmoid or
softmax by setting, a text task here is a row of `SUPPORTED_TASKS`, not a copy of code:

=============  =====================  ==================================================
task           result per text        kinds (model class)
=============  =====================  ==================================================
moderation     ``ModerationScores``   shipped (`HeadModerator` committed in the package,
                                      the default), profanity (`ProfanityModerator`, the
                                      embedded fallback), transformer
                                      (`TransformerModerator`, sigmoid, max over
                                      windows), head (`HeadModerator` from a path)
sentiment      ``SentimentScores``    shipped (`HeadSentiment`, the default), vader
                                      (`VaderSentiment`, the embedded fallback),
                                      transformer (`TransformerSentiment`, softmax, mean
                                      over windows), head (`HeadSentiment` from a path)
=============  =====================  ==================================================

`load_text_classifier` builds the model a config names; `load_embedded_default` builds the
task's embedded fallback, which answers when a node cannot (the ingress fallback) and when
the shipped head is refused at start-up (`load_with_fallback`: the node then serves it marked
degraded). Adding a task is a row here, its result type and its model classes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar

from models.answers import BatchModel
from models.heads import HeadClassifier, HeadModerator, HeadSentiment
from models.moderation import ModerationScores, ProfanityModerator, TransformerModerator
from models.sentiment import SentimentScores, TransformerSentiment, VaderSentiment
from models.shipped import ShippedArtifactError, load_shipped_head
from models.text_windows import WindowedSequenceClassifier

__all__ = [
    "SHIPPED_KIND",
    "SUPPORTED_TASKS",
    "TaskSpec",
    "TextClassification",
    "TextClassifierModel",
    "TextTask",
    "load_embedded_default",
    "load_text_classifier",
    "load_with_fallback",
    "task_spec",
]

logger = logging.getLogger(__name__)

# The configs' default kind for every task: the head committed in the package (models/shipped).
SHIPPED_KIND = "shipped"

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
        checkpoint: What `path` must name; None for an embedded or shipped model (no
            checkpoint, so `path` and the checkpoint options do not apply).
        shipped: The shipped head: loaded with the device and the embedder option only.
    """

    load: Callable[..., TextClassifierModel[Any]]
    checkpoint: str | None = None
    shipped: bool = False


_HEAD_CHECKPOINT = (
    "a directory written by models.heads.save_head (pipelines/text_heads.py writes one)"
)


@dataclass(frozen=True)
class TaskSpec:
    """One row of `SUPPORTED_TASKS`: a text task's result type and model classes.

    Attributes:
        result_type: What the models answer per text (the result cache reads it back as).
        fallback_kind: The embedded model's kind: the ingress fallback, and what serves
            (degraded) when the shipped head is refused. The configs' default kind is
            `SHIPPED_KIND`.
        embedded: Loads the embedded model (no checkpoint).
        transformer: The windowed checkpoint classifier (kind ``"transformer"``; the ONNX
            export gates its artifacts against it).
        head: The MiniLM head classifier (kind ``"head"``).
    """

    result_type: Any
    fallback_kind: str
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
            SHIPPED_KIND: ModelKind(load_shipped_head, shipped=True),
            self.fallback_kind: ModelKind(self.embedded),
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
        kind: One of the task's kinds, e.g. ``"shipped"``, ``"profanity"``,
            ``"transformer"``, ``"head"``.
        path: Checkpoint directory; required for ``"transformer"`` (torch backend) and
            ``"head"``, ignored by the embedded and shipped kinds.
        device: Device of checkpoint and shipped models; the embedded ones run on CPU.
        **options: The model class's ``load`` options (transformer: max_length, stride,
            max_windows_per_forward, name, backend, onnx_path, onnx_threads and, for
            sentiment, neutral_threshold; head: name, version, embedder; shipped:
            embedder). The embedded kinds take none and ignore them, so one config shape
            serves every kind.

    Raises:
        ValueError: Unknown task or kind, or a checkpoint kind without `path`.
        ShippedArtifactError: The shipped head's files fail their MANIFEST checksums.
    """
    spec = task_spec(task)
    normalised = kind.strip().lower()
    model_kind = spec.kinds.get(normalised)
    if model_kind is None:
        raise ValueError(
            f"unknown {task} model kind {kind!r}; accepted kinds: {', '.join(spec.kinds)}"
        )
    if model_kind.shipped:
        return model_kind.load(task, device, embedder=options.get("embedder"))
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
    """The task's embedded fallback (alt-profanity-check, VADER): no checkpoint, CPU."""
    return load_text_classifier(task, task_spec(task).fallback_kind)


def load_with_fallback(
    task: str,
    kind: str,
    path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    **options: Any,
) -> tuple[TextClassifierModel[Any], str | None]:
    """`load_text_classifier`, except that a refused shipped head gives the fallback.

    A shipped head whose files fail their checksums (or are missing) must not serve, and the
    node must not stay down for it either: the task's embedded model serves instead and the
    second value says why, so every answer and ``/health`` can say "degraded". The error
    (file name and expected checksum) is logged once here. Other kinds fail as before.

    Returns:
        ``(model, degraded_reason)``; the reason is None when the configured model loaded.
    """
    try:
        return load_text_classifier(task, kind, path, device, **options), None
    except (ShippedArtifactError, OSError) as exc:
        if kind.strip().lower() != SHIPPED_KIND:
            raise
        fallback = load_embedded_default(task)
        logger.error(
            "shipped %s head refused at start-up: %s; serving %s instead (degraded)",
            task,
            exc,
            fallback.info.name,
        )
        reason = (
            f"shipped {task} head refused ({type(exc).__name__}); "
            f"fallback {fallback.info.name} answers"
        )
        return fallback, reason
