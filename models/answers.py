"""What nodes answer each other: a result plus the model that produced it, and node info.

Every handle call between deployments carries these frozen dataclasses (or a per-task
result type next to its model), never ``dict[str, Any]``: both sides import them from here,
mypy checks both, and the ingress turns them into its HTTP bodies at the edge.

* `ModelInfo` — a loaded model's identity and labels; `ModelRef` — the part answers carry.
* `Answer` — one result of a model node with the `ModelRef` of the model that computed it
  (a reconfigure may swap models between two batches, so each answer names its own).
* `ModelNodeInfo` — a model node's part of ``/health``; `as_json` gives exactly the JSON
  the route has always shown.
* `JsonValue` / `JsonObject` — free-form status documents only (a store's health, cache
  counters), whose keys the stores themselves decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Generic, Protocol, TypeAlias, TypeVar, Union, cast

from configs.nodes import BatchingConfig

__all__ = [
    "AliasFollowInfo",
    "Answer",
    "BatchModel",
    "JsonObject",
    "JsonValue",
    "ModelInfo",
    "ModelNodeInfo",
    "ModelRef",
    "NodeInfo",
    "flattened",
    "json_object",
]

# Union (not `|`): the alias is evaluated at runtime and refers to itself by name.
JsonValue: TypeAlias = Union[  # noqa: UP007
    str, int, float, bool, None, list["JsonValue"], dict[str, "JsonValue"]
]
JsonObject: TypeAlias = dict[str, JsonValue]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


def json_object(document: Mapping[str, object]) -> JsonObject:
    """A status document (store health, counters) as the `JsonObject` it already is.

    The stores build these from plain JSON types; this only tells the type checker so.
    """
    return cast(JsonObject, dict(document))


@dataclass(frozen=True)
class ModelInfo:
    """Identity of a loaded model, reported with every prediction.

    Attributes:
        name: Human-readable model name (for a local checkpoint, its directory name).
        version: Short version id (see `checkpoint_version`) or the package version.
        device: Device the model runs on, as a string such as ``"cpu"`` or ``"cuda:0"``.
        labels: Output label names in the model's own output order.
    """

    name: str
    version: str
    device: str
    labels: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        """Return the info as plain JSON-serialisable types (labels as a list)."""
        return {
            "name": self.name,
            "version": self.version,
            "device": self.device,
            "labels": list(self.labels),
        }


@dataclass(frozen=True)
class ModelRef:
    """The model behind an answer: name, version and device (no labels)."""

    name: str
    version: str
    device: str

    @classmethod
    def of(cls, info: ModelInfo) -> ModelRef:
        """The reference part of a loaded model's `ModelInfo`."""
        return cls(name=info.name, version=info.version, device=info.device)


@dataclass(frozen=True)
class Answer(Generic[ResultT]):
    """One model node result and the model that produced it.

    `degraded_reason` is set when the node itself serves a fallback (its configured model
    was refused at start-up, e.g. a shipped head failing its checksums): the ingress then
    marks the answer degraded as it does its own fallback's.
    """

    result: ResultT
    model: ModelRef
    degraded_reason: str | None = None


class BatchModel(Protocol[ItemT, ResultT]):
    """What a model node serves: the model's identity and one result per item of a batch."""

    @property
    def info(self) -> ModelInfo: ...

    def predict_batch(self, items: list[ItemT], /) -> list[ResultT]: ...


class NodeInfo(Protocol):
    """What every node's ``info()`` answers: a document for ``/health``."""

    def as_json(self) -> JsonObject:
        """The node's part of ``/health`` as plain JSON types."""
        ...


@dataclass(frozen=True)
class AliasFollowInfo:
    """The registry alias a node follows, and how the last check went."""

    model_name: str
    alias: str | None
    poll_s: float
    running: bool
    last_error: str | None


@dataclass(frozen=True)
class ModelNodeInfo:
    """A model node's ``/health`` part: its model, batching, replica and optional parts.

    Attributes:
        model: The model serving now.
        batching: ``@serve.batch`` settings in force.
        replica_id: The replica that answered.
        model_update_error: Why the last model swap failed (the old model kept serving).
        cache: Result cache state and counters (nodes that may cache; None: not shown).
        alias_follow: The followed registry alias (None: not following).
        text_vectors: The shared vector store of nodes that embed text (None: not shown).
        model_source: Where a registered model was loaded from (``"registry"``, or
            ``"cache (registry unreachable)"``); None for models not from the registry.
        degraded_reason: Why the node serves a fallback instead of its configured model
            (None: it serves what was configured).
        accelerator: The GPUs the replica was given and the device its model runs on, with
            why it fell back to the CPU (None: the replica has no GPU).
    """

    model: ModelInfo
    batching: BatchingConfig
    replica_id: str
    model_update_error: str | None = None
    cache: JsonObject | None = None
    alias_follow: AliasFollowInfo | None = None
    text_vectors: JsonObject | None = None
    model_source: str | None = None
    degraded_reason: str | None = None
    accelerator: JsonObject | None = None

    def as_json(self) -> JsonObject:
        """Model name, version, device, labels, batching, replica id, then the set parts."""
        follow = self.alias_follow
        optional = {
            "model_update_error": self.model_update_error or None,
            "cache": self.cache,
            "alias_follow": json_object(asdict(follow)) if follow is not None else None,
            "text_vectors": self.text_vectors,
            "model_source": self.model_source,
            "degraded_reason": self.degraded_reason,
            "accelerator": self.accelerator,
        }
        return json_object(
            {
                **self.model.as_dict(),
                "batching": self.batching.model_dump(),
                "replica_id": self.replica_id,
                **{key: part for key, part in optional.items() if part is not None},
            }
        )


def flattened(answer: object, nested: str, nested_json: Mapping[str, object]) -> JsonObject:
    """One flat JSON object: `nested_json` (the field `nested` of dataclass `answer`, as JSON)
    followed by `answer`'s other fields, in declaration order."""
    own = {field.name: getattr(answer, field.name) for field in fields(cast(Any, answer))}
    del own[nested]
    return json_object({**nested_json, **own})
