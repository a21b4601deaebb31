"""What every batched model node shares: config parsing, batch settings, info, bulk calls.

Each node still declares its own ``@serve.batch`` method, because Ray keeps one batch queue per
decorated function and two node classes must never share a queue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ray import serve

from configs.schemas import ModelNodeConfig, RegisteredModelRef
from models.device import ModelInfo

logger = logging.getLogger("ray.serve")


class _BatchedMethod(Protocol):
    def set_max_batch_size(self, new_max_batch_size: int) -> None: ...
    def set_batch_wait_timeout_s(self, new_batch_wait_timeout_s: float) -> None: ...
    async def __call__(self, item: Any) -> Any: ...


class _Model(Protocol):
    @property
    def info(self) -> ModelInfo: ...

    def predict_batch(self, items: list[Any]) -> list[Any]: ...


class BatchedNodeMixin:
    """Shared behaviour of model nodes; subclasses set ``model`` and define ``predict``."""

    model: _Model
    node_config: ModelNodeConfig = ModelNodeConfig()
    # Nodes that can serve a registered head set these (see `load_registered_head`).
    head_task: str | None = None
    model_device: str = "auto"
    model_update_error: str | None = None

    def _batched(self) -> _BatchedMethod:
        return self.predict  # type: ignore[attr-defined,no-any-return]

    async def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Apply ``user_config`` (batch size, wait time, model) without restarting the replica.

        Async, with the model load in a worker thread: the replica keeps answering on the
        old model while a new one downloads and loads.
        """
        self.node_config = ModelNodeConfig.model_validate(user_config or {})
        batching = self.node_config.batching
        self._batched().set_max_batch_size(batching.max_batch_size)
        self._batched().set_batch_wait_timeout_s(batching.batch_wait_timeout_s)
        logger.info(
            "batching set: max_batch_size=%d batch_wait_timeout_s=%.4f",
            batching.max_batch_size,
            batching.batch_wait_timeout_s,
        )
        if self.node_config.model is not None:
            await asyncio.to_thread(self._swap_model, self.node_config.model)

    def _swap_model(self, ref: RegisteredModelRef) -> None:
        """Load the registered head `ref` names and swap it in when it is not already serving.

        The swap is one attribute assignment: batches already running hold the old model
        object and finish on it; the next batch uses the new one. A failed load keeps the old
        model serving (a bad registry entry must not take the node down) and is reported in
        ``info()`` as ``model_update_error``.
        """
        if self.head_task is None:
            raise ValueError(
                f"user_config.model is set but {type(self).__name__} cannot load registered "
                "heads; remove `model` from this deployment's user_config"
            )
        try:
            new_model = load_registered_head(
                self.head_task, ref, self.model_device, current=self.model.info
            )
        except (LookupError, OSError, ValueError) as exc:
            self.model_update_error = f"{type(exc).__name__}: {exc}"
            logger.error("model update to %s failed, old model kept: %s", ref, exc)
            return
        self.model_update_error = None
        if new_model is not None:
            old = self.model.info
            self.model = new_model
            logger.info("model swapped: %s %s -> %s", old.name, old.version, new_model.info.version)

    async def _run_model(self, items: list[Any]) -> list[Any]:
        # One read of self.model: a reconfigure may swap it while this batch runs, and the
        # answer must name the model that really computed it.
        model = self.model
        # In a worker thread, so the replica's event loop keeps queueing the next batch
        # while this one computes (torch and sklearn release the GIL in their kernels).
        results = await asyncio.to_thread(model.predict_batch, items)
        if len(results) != len(items):
            raise RuntimeError(f"model returned {len(results)} results for {len(items)} inputs")
        # Each answer carries the model that produced it: versions can change under
        # reconfigure, and every response must name the version that answered.
        info = model.info.as_dict()
        model_ref = {key: info[key] for key in ("name", "version", "device")}
        return [{"result": result, "model": model_ref} for result in results]

    async def predict_many(self, items: list[Any]) -> list[Any]:
        """Score many items in one handle call; they join the same batch queue as single calls."""
        return list(await asyncio.gather(*(self._batched()(item) for item in items)))

    def info(self) -> dict[str, object]:
        """Model name, version, device and labels, plus the batching in force."""
        extra = {"model_update_error": self.model_update_error} if self.model_update_error else {}
        return {
            **self.model.info.as_dict(),
            "batching": self.node_config.batching.model_dump(),
            "replica_id": serve.get_replica_context().replica_id.unique_id,
            **extra,
        }


def load_registered_head(
    task: str, ref: RegisteredModelRef, device: str, current: ModelInfo | None = None
) -> Any:
    """Fetch a registered head (MLflow) and load it; None when `current` is that version.

    The reported version is ``"<registered name>/<version>"``, e.g. ``heads-moderation/3``.
    """
    # Imported here: mlflow is only needed by nodes that serve registered heads.
    from models.heads import HeadModerator, HeadSentiment
    from pipelines.registry import fetch_registered_head

    head_dir, name, version = fetch_registered_head(ref)
    label = f"{name}/{version}"
    if current is not None and current.version == label:
        return None
    loader = HeadModerator if task == "moderation" else HeadSentiment
    return loader.load(head_dir, device, name=name, version=label)
