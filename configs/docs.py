"""The configuration reference, generated from the config models' field descriptions.

    python -m configs.docs > docs/configuration.md

Every setting an operator can change is a pydantic field with a description (the docstring
under the field, see ``configs.base.StrictModel``); this module walks the models
(``serve_config.yaml``'s application ``args``, each deployment's ``user_config``, the
environment, the retraining job files and their schedules) and writes one Markdown table per
model: field, type (with its bounds), default, description. A nested model
gets its own section, linked from the field that holds it, and is written once however many
fields hold it. The output depends only on the models, so ``tests/unit/configs/test_docs.py``
compares it with the committed page and fails when the page is stale.

A field without a description is an error here (``MissingDescriptionError``), not a blank cell.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from configs.app import AppArgs
from configs.ingress import IngressConfig
from configs.nodes import ModelNodeConfig
from configs.pipelines import (
    AspectJobConfig,
    BatchInferenceJobConfig,
    FinetuneTextJobConfig,
    HeadTuneJobConfig,
    RankingBlendJobConfig,
    RecommenderMFJobConfig,
    TextHeadJobConfig,
)
from configs.profiles import ServeProfile
from configs.recommender import RecommenderConfig
from configs.schedules import Schedules
from configs.settings import Settings
from configs.trends import TrendsNodeConfig

REGENERATE_COMMAND = "python -m configs.docs > docs/configuration.md"

# Absolute paths in defaults (e.g. the bundled reply bank) are shown relative to the checkout,
# so the page is the same on every machine.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent) + "/"
# A "<" that Markdown would read as the start of an HTML tag (``<name>``, ``</b>``).
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


@dataclass(frozen=True)
class UserConfigOwner:
    """The deployments whose ``user_config`` one model validates."""

    deployments: tuple[str, ...]
    model: type[BaseModel]
    path: str


@dataclass(frozen=True)
class ConfigFile:
    """A YAML file read by a job, validated by one model."""

    files: tuple[str, ...]
    command: str
    model: type[BaseModel]
    path: str


# Which model each deployment's reconfigure() validates its user_config with. The model
# nodes share one; a variant (`TextModeration-<variant>`, `Sentiment-<variant>`) is the same
# node class under another name.
USER_CONFIGS: tuple[UserConfigOwner, ...] = (
    UserConfigOwner(("Ingress",), IngressConfig, "Ingress.user_config"),
    UserConfigOwner(
        (
            "TextModeration",
            "Sentiment",
            "NsfwDetector",
            "ImageTagger",
            "ObjectDetector",
            "AspectSentiment",
            "Embedder",
            "SmartReply",
            "TextModeration-<variant>",
            "Sentiment-<variant>",
        ),
        ModelNodeConfig,
        "<model node>.user_config",
    ),
    UserConfigOwner(("Recommender",), RecommenderConfig, "Recommender.user_config"),
    UserConfigOwner(("Trends",), TrendsNodeConfig, "Trends.user_config"),
)

# Retraining job files and the model each is validated with.
JOB_CONFIGS: tuple[ConfigFile, ...] = (
    ConfigFile(
        ("configs/pipelines/moderation_head.yaml", "configs/pipelines/sentiment_head.yaml"),
        "python -m pipelines.text_heads --config <file>",
        TextHeadJobConfig,
        "text-head job: ",
    ),
    ConfigFile(
        (
            "configs/pipelines/tune_moderation_head.yaml",
            "configs/pipelines/tune_sentiment_head.yaml",
        ),
        "python -m pipelines.tune --config <file>",
        HeadTuneJobConfig,
        "text-head search (Ray Tune): ",
    ),
    ConfigFile(
        ("configs/pipelines/finetune_moderation.yaml", "configs/pipelines/finetune_sentiment.yaml"),
        "python -m pipelines.finetune_text --config <file>",
        FinetuneTextJobConfig,
        "LoRA fine-tuning job: ",
    ),
    ConfigFile(
        ("configs/pipelines/finetune_aspects.yaml",),
        "python -m pipelines.finetune_aspects --config <file>",
        AspectJobConfig,
        "aspect-sentiment job: ",
    ),
    ConfigFile(
        ("configs/pipelines/recommender_mf.yaml",),
        "python -m pipelines.recommender_mf --config <file>",
        RecommenderMFJobConfig,
        "matrix-factorisation job: ",
    ),
    ConfigFile(
        ("configs/pipelines/ranking_blend.yaml",),
        "python -m pipelines.ranking_blend --config <file>",
        RankingBlendJobConfig,
        "learned-blend job: ",
    ),
    ConfigFile(
        ("configs/pipelines/batch_inference.yaml",),
        "python -m pipelines.batch_inference --config <file>",
        BatchInferenceJobConfig,
        "batch inference job: ",
    ),
)
SCHEDULES = ConfigFile(
    ("configs/schedules.yaml",),
    "python -m pipelines.schedule --address http://<head>:8265",
    Schedules,
    "schedules: ",
)


class MissingDescriptionError(ValueError):
    """A config field has no description, so the reference would have a blank cell."""


def user_config_model(deployment: str) -> type[BaseModel] | None:
    """The model that validates ``deployment``'s ``user_config`` (variants by their base)."""
    for owner in USER_CONFIGS:
        for name in owner.deployments:
            prefix = name.removesuffix("<variant>")
            is_variant = prefix != name and deployment.startswith(prefix)
            if deployment == name or is_variant:
                return owner.model
    return None


def _nested_models(annotation: object) -> Iterator[type[BaseModel]]:
    """Config models inside a field's type (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    if get_origin(annotation) is Literal:
        return
    for argument in get_args(annotation):
        yield from _nested_models(argument)


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def _link(model: type[BaseModel]) -> str:
    return f"[{model.__name__}](#{_anchor(model)})"


def _type_name(annotation: object) -> str:
    """A field's type as a YAML writer reads it; config models become links to their section."""
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _link(annotation)
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is Literal:
        return " / ".join(json.dumps(value) for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(argument) for argument in get_args(annotation))
    if origin in (list, dict, tuple, set, frozenset):
        inner = ", ".join(_type_name(argument) for argument in get_args(annotation))
        return f"{origin.__name__}[{inner}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


# How each constraint of a field reads in the type column, by its annotated_types class.
_BOUND_FORMATS: tuple[tuple[type, str], ...] = (
    (annotated_types.Gt, "> {0.gt}"),
    (annotated_types.Ge, "≥ {0.ge}"),
    (annotated_types.Lt, "< {0.lt}"),
    (annotated_types.Le, "≤ {0.le}"),
    (annotated_types.MinLen, "length ≥ {0.min_length}"),
    (annotated_types.MaxLen, "length ≤ {0.max_length}"),
)


def _bounds(field: FieldInfo) -> list[str]:
    """The field's constraints (``ge``, ``le``, lengths, pattern) in reading order."""
    bounds: list[str] = []
    for item in field.metadata:
        formats = [text for kind, text in _BOUND_FORMATS if isinstance(item, kind)]
        if formats:
            bounds.append(formats[0].format(item))
        elif getattr(item, "pattern", None):
            bounds.append(f"matches `{item.pattern}`")
    return bounds


def _value(value: object) -> str:
    """A default as it would be written in YAML (``true``, ``null``, ``"text"``, ``[...]``)."""
    if isinstance(value, BaseModel):
        return _value(value.model_dump(mode="json"))
    text = json.dumps(value, ensure_ascii=False)
    return text.replace(_REPO_ROOT, "")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    models = list(_nested_models(field.annotation))
    if isinstance(value, BaseModel) and models:
        return "its defaults"
    return f"`{_value(value)}`"


def _escape_html(text: str) -> str:
    """``<`` outside code spans as an entity, so ``<name>`` shows instead of vanishing as a tag."""
    parts = text.split("`")
    return "`".join(part if i % 2 else _TAG_START.sub("&lt;", part) for i, part in enumerate(parts))


def _cell(text: str) -> str:
    """One table cell: on one line, with the table's column separator escaped."""
    return _escape_html(" ".join(text.split()).replace("|", "\\|"))


def _doc(model: type[BaseModel]) -> str:
    """The model's docstring with reStructuredText literals turned into Markdown ones."""
    doc = inspect.cleandoc(model.__doc__ or "")
    return _escape_html(re.sub(r"``(.+?)``", r"`\1`", doc))


def _description(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    if not field.description or not field.description.strip():
        raise MissingDescriptionError(
            f"{model.__module__}.{model.__name__}.{name} has no description; add a "
            f"docstring under the field (or description=... to its Field()) so "
            f"{REGENERATE_COMMAND.split(' > ')[1]} can document it"
        )
    return field.description


def _table(model: type[BaseModel]) -> list[str]:
    lines = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        type_text = ", ".join([_type_name(field.annotation), *_bounds(field)])
        lines.append(
            f"| `{name}` | {_cell(type_text)} | {_cell(_default(field))} "
            f"| {_cell(_description(model, name, field))} |"
        )
    return lines


def _join(path: str, name: str) -> str:
    return f"{path}{name}" if path.endswith(" ") else f"{path}.{name}"


class _Writer:
    """Writes each model's section once, nested models after the model that holds them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.written: set[type[BaseModel]] = set()
        self.places: dict[type[BaseModel], list[str]] = {}

    def add_root(self, model: type[BaseModel], where: str, path: str) -> None:
        """Record where a top-level model is read, and the paths of the models inside it."""
        self.places.setdefault(model, []).append(where)
        self._collect(model, path)

    def _collect(self, model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            suffix = ""
            if _holds(field.annotation, dict):
                suffix = ".<name>"
            elif _holds(field.annotation, list):
                suffix = "[]"
            place = _join(path, name) + suffix
            for nested in _nested_models(field.annotation):
                places = self.places.setdefault(nested, [])
                if f"`{place}`" not in places:
                    places.append(f"`{place}`")
                    self._collect(nested, place)

    def section(self, model: type[BaseModel], level: int = 3) -> None:
        """The model's heading, docstring, places and table, then the models it holds."""
        if model in self.written:
            return
        self.written.add(model)
        self.lines += ["", f"{'#' * level} {model.__name__}", ""]
        doc = _doc(model)
        if doc:
            self.lines += [doc, ""]
        places = self.places.get(model, [])
        if places:
            self.lines += ["Where: " + ", ".join(places) + ".", ""]
        self.lines += _table(model)
        for field in model.model_fields.values():
            for nested in _nested_models(field.annotation):
                self.section(nested, level)


def _holds(annotation: object, container: type) -> bool:
    """Whether the type is ``container[...]``, possibly inside ``... | None``."""
    if get_origin(annotation) is container:
        return True
    return any(get_origin(argument) is container for argument in get_args(annotation))


def _settings_table() -> list[str]:
    lines = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        variable = field.validation_alias if isinstance(field.validation_alias, str) else name
        lines.append(
            f"| `{variable}` | {_cell(_type_name(field.annotation))} | {_cell(_default(field))} "
            f"| {_cell(_description(Settings, name, field))} |"
        )
    return lines


_INTRO = f"""\
# Configuration reference

<!-- Generated by `{REGENERATE_COMMAND}` from the config models' field descriptions
(configs/*.py). Do not edit by hand: change the field's docstring and regenerate;
tests/unit/configs/test_docs.py fails while this page is stale. -->

Every setting below is a field of a pydantic model in `configs/`; unknown keys are an error
(a typo never falls back to a default silently), and a bad value is refused with a message
naming the field. Rules between fields (a reject threshold at or above its flag threshold,
`trends` needing the recommender, ...) are checked at load in the same way.

- [Environment variables](#environment-variables): secrets and addresses (`configs/settings.py`).
- [Application args](#application-args): `applications[0].args` in `serve_config.yaml`, read
  once when the graph is built (`serve deploy` of changed args restarts the replicas).
- [Deployment user_config](#deployment-user_config): per deployment in `serve_config.yaml`,
  applied live by `reconfigure()` when the file is deployed again (no restart).
- [Retraining jobs](#retraining-jobs): the YAML files under `configs/pipelines/`.
- [Schedules](#schedules): `configs/schedules.yaml`.
- [Serve profiles](#serve-profiles): overlays of `serve_config.yaml` such as
  `serve_config.gpu.yaml` (`deployments.launch --profile <name>`).
"""

_ENVIRONMENT = """\
## Environment variables

Read once per process (`configs.settings.get_settings()`), also from a `.env` file in the
working directory. Ray's own variables (`RAY_AUTH_MODE`, `RAY_SERVE_ENABLE_HA_PROXY`,
`RAY_SERVE_THROUGHPUT_OPTIMIZED`, ...) are set where Ray starts; see
[deployment](deployment.md).
"""

_ARGS = """\
## Application args

`applications[0].args` in `serve_config.yaml`: the arguments of the application builder
`deployments.app:build_app`, validated as `AppArgs`. They decide which nodes exist and which
model each loads.
"""

_USER_CONFIG = """\
## Deployment user_config

Per deployment under `applications[0].deployments[]`: Ray Serve's own fields (`num_replicas`,
`max_ongoing_requests`, `ray_actor_options.num_cpus` / `num_gpus`, ...; keep
`max_ongoing_requests` at or above the node's `max_batch_size`, or batches never fill) and our
`user_config`, validated by the deployment's `reconfigure()`:
"""

_JOBS = """\
## Retraining jobs

One YAML file is one job run; see [retraining](retraining.md).
"""

_SCHEDULES = """\
## Schedules

`configs/schedules.yaml`, read by `python -m pipelines.schedule`; see
[retraining](retraining.md).
"""


_PROFILES = """\
## Serve profiles

`serve_config.<name>.yaml` beside `serve_config.yaml`, applied by
`python -m deployments.launch --profile <name>` (or `SOCIALPLAY_PROFILE`); see
[deployment](deployment.md#gpu-profile).
"""


def _owners_table() -> list[str]:
    lines = ["| deployment | `user_config` model |", "|---|---|"]
    for owner in USER_CONFIGS:
        names = ", ".join(f"`{name}`" for name in owner.deployments)
        lines.append(f"| {names} | {_link(owner.model)} |")
    return lines


def _files(config: ConfigFile) -> str:
    files = ", ".join(f"`{name}`" for name in config.files)
    return f"{files}; run with `{config.command}`"


def render() -> str:
    """The whole reference page, deterministic for a given set of config models."""
    writer = _Writer()
    writer.add_root(AppArgs, "`applications[0].args` in `serve_config.yaml`", "args")
    for owner in USER_CONFIGS:
        names = ", ".join(f"`{name}`" for name in owner.deployments)
        writer.add_root(owner.model, f"the `user_config` of {names}", owner.path)
    for config in (*JOB_CONFIGS, SCHEDULES):
        writer.add_root(config.model, _files(config), config.path)
    writer.add_root(ServeProfile, "`serve_config.<name>.yaml`", "profile")

    writer.lines.append(_INTRO.rstrip("\n"))
    writer.lines += ["", _ENVIRONMENT.rstrip("\n"), "", *_settings_table()]
    writer.lines += ["", _ARGS.rstrip("\n")]
    writer.section(AppArgs)
    writer.lines += ["", _USER_CONFIG.rstrip("\n"), "", *_owners_table()]
    for owner in USER_CONFIGS:
        writer.section(owner.model)
    writer.lines += ["", _JOBS.rstrip("\n")]
    for config in JOB_CONFIGS:
        writer.section(config.model)
    writer.lines += ["", _SCHEDULES.rstrip("\n")]
    writer.section(SCHEDULES.model)
    writer.lines += ["", _PROFILES.rstrip("\n")]
    writer.section(ServeProfile)
    return "\n".join(writer.lines).rstrip("\n") + "\n"


def main() -> None:
    """Print the reference (redirect it to docs/configuration.md)."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
